#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlp_lab::http::fuzz::experiment_json(data));
