//! The same bits on every machine: training runs through every activation, optimizer and
//! head, hashed (weights, epoch records without their timings, a prediction), must give the
//! golden hashes below on any x86-64 CPU with AVX2 + FMA or AVX-512, whatever its caches, at
//! any thread count.
//!
//! What differs between machines is forced on this one, in child processes (the instruction
//! set and the cache sizes are read once per process): `MLP_LAB_ISA=avx2|avx512`, the thread
//! count of the training team, and the cache sizes `gemm` reads from sysfs, replaced in a
//! private mount namespace (`unshare`, which needs root; where it is refused the cache
//! variants are skipped with a note, unless `MLP_LAB_REQUIRE_FAKE_CACHES=1`, as `.ci/run`
//! sets, makes that a failure).
//!
//! The golden hashes were computed by this file's `child_prints_its_hash` on an Intel Xeon
//! (AVX-512) when the optimizer's norms became sums of fixed blocks of each tensor (so that
//! the update could be shared between threads); a machine that computes other bits fails
//! `golden_hashes` loudly. They change only with a change to the
//! arithmetic of training (then the study's hash in docs/study changes too).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use mlp_lab::nn::parallel::{self, Team};
use mlp_lab::nn::rng::Rng;
use mlp_lab::nn::{
    fit, Activation, Control, Dataset, Head, Interrupter, Model, ModelSpec, OptimizerConfig,
    Schedule, Targets, TrainConfig,
};
use ndarray::Array2;
use sha2::{Digest, Sha256};

/// The hash of the whole suite, and of each run, on every machine.
const GOLDEN_SUITE: &str = "feb299ec6aa8131f3bc2df40ebfb896620739cc7c7e5f9bf6377ebf3fd823a70";

/// The runs: each hidden activation once (two per network), each optimizer and head several
/// times, batch norm and dropout on some. 700 inputs make `k` two pieces, a batch of 64 makes
/// the first layer's products large enough to be split across threads, the [`WIDE`] first
/// layer of the Adam run makes its optimizer steps large enough to be shared too, and one
/// output (the identity head) takes the one-column route.
fn runs() -> Vec<(ModelSpec, TrainConfig)> {
    let optimizers = [
        r#"{"kind": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": true}"#,
        r#"{"kind": "adam", "learning_rate": 0.003}"#,
        r#"{"kind": "adamw", "learning_rate": 0.003, "weight_decay": 0.01}"#,
        r#"{"kind": "rmsprop", "learning_rate": 0.001}"#,
        r#"{"kind": "sgd", "learning_rate": 0.02}"#,
        r#"{"kind": "rmsprop", "learning_rate": 0.002, "momentum": 0.5}"#,
    ];
    let pairs = [
        ["relu", "gelu"],
        ["sigmoid", "tanh"],
        ["leaky_relu", "prelu"],
        ["elu", "selu"],
        ["silu", "softplus"],
        ["identity", "relu"],
    ];
    let heads = [(Head::Softmax, 5), (Head::Sigmoid, 3), (Head::Identity, 1)];
    pairs
        .iter()
        .zip(optimizers)
        .enumerate()
        .map(|(i, (pair, optimizer))| {
            let (head, outputs) = heads[i % heads.len()];
            let activations = pair.map(|a| Activation::from_name(a).expect("a known activation"));
            let first = if i == 1 { WIDE } else { 96 };
            let mut spec = ModelSpec::new(&[700, first, 40, outputs], activations[0], head);
            spec.activations = activations.to_vec();
            spec.batch_norm = i % 2 == 1;
            spec.dropout = if i % 3 == 2 { 0.2 } else { 0.0 };
            let config = TrainConfig {
                epochs: 3,
                batch_size: 64,
                seed: 7 + i as u64,
                optimizer: serde_json::from_str::<OptimizerConfig>(optimizer)
                    .expect("a valid optimizer"),
                l2: if i % 2 == 0 { 1e-4 } else { 0.0 },
                gradient_clip_norm: (i % 3 == 0).then_some(1.0),
                lr_schedule: if i % 2 == 0 {
                    Schedule::default()
                } else {
                    serde_json::from_str(r#"{"kind": "cosine"}"#).expect("a valid schedule")
                },
                validation_split: 0.25,
                standardize: i % 2 == 0,
                ..TrainConfig::default()
            };
            (spec, config)
        })
        .collect()
}

/// The first hidden layer of the Adam run: 700 × 400 weights are more than the optimizer
/// updates on one thread.
const WIDE: usize = 400;
const _: () = assert!(700 * WIDE >= mlp_lab::nn::optim::PARALLEL_ELEMENTS);

/// 192 rows of 700 inputs, targets to suit `head`.
fn data(head: Head, outputs: usize) -> Dataset {
    let mut rng = Rng::new(3);
    let rows = 192;
    let x = Array2::from_shape_fn((rows, 700), |_| rng.uniform_range(-2.0, 2.0) as f32);
    let labels: Vec<String> = (0..rows)
        .map(|_| rng.below(outputs.max(2)).to_string())
        .collect();
    let names = (0..outputs).map(|o| format!("y{o}")).collect();
    let targets = match head {
        Head::Softmax => Targets::from_labels(&labels),
        Head::Sigmoid => Targets::MultiLabel {
            values: Array2::from_shape_fn((rows, outputs), |(r, c)| {
                f32::from(u8::from((r * 7 + c * 3) % 5 < 2))
            }),
            names,
        },
        Head::Identity => Targets::Values {
            values: Array2::from_shape_fn((rows, outputs), |(r, _)| {
                x[[r, 0]] * 0.5 - x[[r, 1]] + 0.1
            }),
            names,
        },
    };
    Dataset::new(x, None, targets).expect("valid data")
}

/// Trains every run; the hash of each and of all.
fn hashes() -> (String, Vec<String>) {
    let mut all = Sha256::new();
    let mut each = Vec::new();
    for (spec, config) in runs() {
        let (head, outputs) = (spec.output, spec.outputs());
        let data = data(head, outputs);
        let model = Model::new(spec, config.seed).expect("a valid spec");
        let (model, report) = fit(model, &data, &config, &Interrupter::new(), &mut |_| {
            Control::Continue
        })
        .expect("training runs");
        let mut run = Sha256::new();
        for param in &model.params {
            for v in param.view() {
                run.update(v.to_bits().to_le_bytes());
            }
        }
        for record in &report.history {
            let mut record = record.clone();
            record.seconds = 0.0;
            run.update(serde_json::to_vec(&record).expect("a record serializes"));
        }
        let predicted = model
            .predict(data.features.slice(ndarray::s![..100, ..]))
            .expect("prediction runs");
        for v in &predicted {
            run.update(v.to_bits().to_le_bytes());
        }
        let run = hex(&run.finalize());
        all.update(run.as_bytes());
        each.push(run);
    }
    (hex(&all.finalize()), each)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Trains inside a team of `threads` threads (all of them allowed to work).
fn hashes_on(threads: usize) -> (String, Vec<String>) {
    parallel::set_cores(threads.max(std::thread::available_parallelism().map_or(1, usize::from)));
    let team = Team::new(threads - 1, Arc::new(|| {})).expect("threads start");
    let _entered = team.enter();
    hashes()
}

/// Run by the other tests in a child process: prints the suite's hash, trained on
/// `MLP_LAB_BITS_THREADS` threads.
#[test]
#[ignore = "run in child processes by `the_same_bits_under_forced_isas_caches_and_threads`"]
fn child_prints_its_hash() {
    let threads = std::env::var("MLP_LAB_BITS_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let (suite, each) = hashes_on(threads);
    println!(
        "BITS {suite} {} {}",
        parallel::blocks_helped(),
        each.join(",")
    );
}

#[test]
fn golden_hashes() {
    let (suite, each) = hashes_on(2);
    assert_eq!(
        suite, GOLDEN_SUITE,
        "this machine trains other bits than the golden ones (runs: {each:?})"
    );
}

/// A fake `/sys/devices/system/cpu` with one CPU's caches: L1d, L2 and L3 sizes and ways.
fn fake_caches(dir: &Path, l1: (&str, u32), l2: (&str, u32), l3: (&str, u32)) {
    for (index, level, kind, (size, ways)) in [
        (0, 1, "Data", l1),
        (1, 1, "Instruction", ("32K", 8)),
        (2, 2, "Unified", l2),
        (3, 3, "Unified", l3),
    ] {
        let path = dir.join(format!("cpu0/cache/index{index}"));
        std::fs::create_dir_all(&path).unwrap();
        for (name, value) in [
            ("level", level.to_string()),
            ("type", kind.to_owned()),
            ("size", size.to_owned()),
            ("ways_of_associativity", ways.to_string()),
            ("coherency_line_size", "64".to_owned()),
            ("shared_cpu_list", "0".to_owned()),
        ] {
            std::fs::write(path.join(name), format!("{value}\n")).unwrap();
        }
    }
}

/// The suite's hash from a child process under `isa`, `threads` and, if given, fake caches
/// (checking that helpers took part when there were any). `Err` when the fake caches cannot
/// be mounted.
fn child(isa: &str, threads: usize, caches: Option<&Path>) -> Result<String, String> {
    let exe = std::env::current_exe().unwrap();
    let test_args = [
        "--ignored",
        "--exact",
        "child_prints_its_hash",
        "--nocapture",
    ];
    let mut command = match caches {
        None => {
            let mut c = Command::new(&exe);
            c.args(test_args);
            c
        }
        Some(dir) => {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(r#"mount --bind "$0" /sys/devices/system/cpu && exec "$@""#)
                .arg(dir)
                .arg(&exe)
                .args(test_args);
            c
        }
    };
    let out = command
        .env("MLP_LAB_ISA", isa)
        .env("MLP_LAB_BITS_THREADS", threads.to_string())
        .output()
        .map_err(|e| format!("cannot run the child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find_map(|l| l.strip_prefix("BITS ")) {
        Some(line) => {
            let mut fields = line.split(' ');
            let hash = fields.next().unwrap_or_default().to_owned();
            let helped: usize = fields.next().and_then(|h| h.parse().ok()).unwrap_or(0);
            assert!(
                threads == 1 || helped > 0,
                "under {isa}, {threads} threads, no helper ran a block: nothing was split"
            );
            Ok(hash)
        }
        None if caches.is_some() && !out.status.success() => Err(format!(
            "fake caches refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        None => panic!(
            "the child under {isa}, {threads} threads printed no hash:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn the_same_bits_under_forced_isas_caches_and_threads() {
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    let avx2 =
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    assert!(
        avx2,
        "these bits are promised on CPUs with AVX2 and FMA only"
    );
    let mut isas = vec!["avx2"];
    if avx512 {
        isas.push("avx512");
    } else {
        eprintln!("note: no AVX-512 on this CPU; its kernels are not checked here");
    }
    let mut seen = Vec::new();
    for isa in &isas {
        for threads in [1, 2, 4] {
            seen.push((
                format!("{isa}, {threads} threads"),
                child(isa, threads, None).unwrap(),
            ));
        }
    }
    let dir = std::env::temp_dir().join(format!("mlp-lab-caches-{}", std::process::id()));
    // (L1d, L2, L3): Intel since Ice Lake (48 KiB 12-way: gemm's block of k was 1,024 there),
    // an older Intel core, Zen 4. A fourth, smaller than any AVX2 core's (16 KiB L1, 128 KiB
    // L2), went when the suite's Adam run grew to a 400-unit layer: gemm-common 0.19's
    // `kernel_params` then rounds its row block down to 0 and divides by it (a panic inside
    // gemm, before any of our arithmetic), so no cache that small can be checked.
    let setups = [
        (("48K", 12), ("2048K", 16), ("105M", 15)),
        (("32K", 8), ("256K", 4), ("8M", 16)),
        (("32K", 8), ("1024K", 8), ("32M", 16)),
    ];
    let require = std::env::var("MLP_LAB_REQUIRE_FAKE_CACHES").is_ok_and(|v| v == "1");
    'setups: for (i, (l1, l2, l3)) in setups.into_iter().enumerate() {
        let path = dir.join(i.to_string());
        fake_caches(&path, l1, l2, l3);
        for (isa, threads) in [(isas[isas.len() - 1], 2), ("avx2", 1)] {
            match child(isa, threads, Some(&path)) {
                Ok(hash) => seen.push((
                    format!("{isa}, {threads} threads, caches {l1:?} {l2:?} {l3:?}"),
                    hash,
                )),
                Err(reason) if !require => {
                    eprintln!("note: cache sizes not forced ({reason})");
                    break 'setups;
                }
                Err(reason) => panic!("{reason} (MLP_LAB_REQUIRE_FAKE_CACHES=1)"),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let first = &seen[0].1;
    let differing: Vec<_> = seen.iter().filter(|(_, h)| h != first).collect();
    assert!(
        differing.is_empty(),
        "{} gave {first}, but {differing:?}",
        seen[0].0
    );
    assert_eq!(
        first, GOLDEN_SUITE,
        "every variant agrees, on other bits than the golden ones"
    );
}
