//! How fast W2 prediction bodies (rows of 784 numbers) decode into one flat `Vec<f32>`:
//! [`row_json::parse_predict`] against two general JSON decoders through one flat
//! `DeserializeSeed` (serde_json, as the server's general path, and sonic-rs).
//!
//! ```sh
//! cargo bench -p row-json            # or: cargo bench -p row-json --bench parse -- --quick
//! ```
//!
//! The bodies are printed as `json.dumps` prints them (`{"inputs": [[a, b, …], …]}`), each
//! number the shortest text that reads back as its `f32` (what a client serializing `f32`s
//! sends), from a seeded generator uniform in [-3, 3). Every decoder must give the same bits
//! before anything is timed. Each timing is the median of several repetitions after a
//! warm-up; the decoders take turns within each repetition, so that a change in the
//! machine's load falls on all of them alike. Figures go in docs/benchmarks.md.

use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Values in a row: the input width of the W2 network (784-256-128-10).
const WIDTH: usize = 784;

/// A body decoded: its values row after row, and its shape.
#[derive(Debug, PartialEq)]
struct Decoded {
    values: Vec<f32>,
    rows: usize,
    width: usize,
}

impl Decoded {
    /// The values' bits (so that `-0.0` and `0.0` differ) and the shape.
    fn bits(&self) -> (Vec<u32>, usize, usize) {
        (
            self.values.iter().map(|x| x.to_bits()).collect(),
            self.rows,
            self.width,
        )
    }
}

/// SplitMix64: enough for reproducible numbers, and no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`, as an `f32`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }
}

/// A prediction body of `rows` rows of [`WIDTH`] numbers in [-3, 3).
fn body(rows: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    let rows: Vec<String> = (0..rows)
        .map(|_| {
            let row: Vec<String> = (0..WIDTH)
                .map(|_| format!("{}", rng.uniform(-3.0, 3.0)))
                .collect();
            format!("[{}]", row.join(", "))
        })
        .collect();
    format!("{{\"inputs\": [{}]}}", rows.join(", ")).into_bytes()
}

/// The request object: `inputs` into the flat buffer, any other member skipped.
struct Request<'a>(&'a mut Decoded);

impl<'de> DeserializeSeed<'de> for Request<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Request<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a prediction request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<&str>()? {
            if key == "inputs" {
                map.next_value_seed(Rows(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// `[[…], …]`: each row appended to the flat buffer; rows must be of one width.
struct Rows<'a>(&'a mut Decoded);

impl<'de> DeserializeSeed<'de> for Rows<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Rows<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("rows of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        loop {
            let before = out.values.len();
            if seq.next_element_seed(Row(&mut out.values))?.is_none() {
                return Ok(());
            }
            let n = out.values.len() - before;
            if out.rows == 0 {
                out.width = n;
            } else if n != out.width {
                return Err(serde::de::Error::custom("rows of different widths"));
            }
            out.rows += 1;
        }
    }
}

/// `[n, …]`: each number read as an `f64` (correctly rounded) and stored `as f32`, as the
/// server's general path does.
struct Row<'a>(&'a mut Vec<f32>);

impl<'de> DeserializeSeed<'de> for Row<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Row<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(x) = seq.next_element::<f64>()? {
            self.0.push(x as f32);
        }
        Ok(())
    }
}

/// An empty result with the first guess `row_json` makes for its buffer (a number every
/// eight bytes), so that the general decoders are timed on parsing, not on growing a vector.
fn empty(bytes: &[u8]) -> Decoded {
    Decoded {
        values: Vec::with_capacity(bytes.len() / 8),
        rows: 0,
        width: 0,
    }
}

fn by_row_json(bytes: &[u8]) -> Decoded {
    let p = row_json::parse_predict(bytes).expect("row_json takes the body");
    Decoded {
        values: p.values,
        rows: p.rows,
        width: p.width,
    }
}

fn by_serde_json(bytes: &[u8]) -> Decoded {
    let mut out = empty(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Request(&mut out)
        .deserialize(&mut de)
        .expect("serde_json takes the body");
    de.end().expect("nothing after the body");
    out
}

fn by_sonic_rs(bytes: &[u8]) -> Decoded {
    let mut out = empty(bytes);
    let mut de = sonic_rs::Deserializer::from_slice(bytes);
    Request(&mut out)
        .deserialize(&mut de)
        .expect("sonic-rs takes the body");
    de.end().expect("nothing after the body");
    out
}

/// A decoder under test.
struct Parser {
    name: &'static str,
    decode: fn(&[u8]) -> Decoded,
}

const PARSERS: [Parser; 3] = [
    Parser {
        name: "row_json::parse_predict",
        decode: by_row_json,
    },
    Parser {
        name: "serde_json, flat seed",
        decode: by_serde_json,
    },
    Parser {
        name: "sonic-rs, flat seed",
        decode: by_sonic_rs,
    },
];

/// The time of one decode of `bytes` by `decode`, over a batch of `iterations`.
fn time_batch(decode: fn(&[u8]) -> Decoded, bytes: &[u8], iterations: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(decode(black_box(bytes)));
    }
    start.elapsed() / iterations
}

/// How many decodes of `bytes` take about `target`, by the slowest decoder.
fn batch_size(bytes: &[u8], target: Duration) -> u32 {
    let slowest = PARSERS
        .iter()
        .map(|p| time_batch(p.decode, bytes, 3))
        .max()
        .expect("parsers");
    (target.as_secs_f64() / slowest.as_secs_f64().max(1e-9)).clamp(1.0, 1e6) as u32
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `--quick` makes a short run (to see that it works).
    let quick = std::env::args().any(|a| a == "--quick");
    let (repetitions, batch_time, warm_up) = if quick {
        (3, Duration::from_millis(20), Duration::from_millis(50))
    } else {
        (21, Duration::from_millis(100), Duration::from_millis(500))
    };
    println!(
        "row-json parse benchmark: median of {repetitions} batches of ~{} ms each, after {} ms \
         of warm-up per decoder",
        batch_time.as_millis(),
        warm_up.as_millis()
    );
    for rows in [1, 64] {
        let bytes = body(rows, 0x5EED + rows as u64);
        let want = by_serde_json(&bytes).bits();
        assert_eq!((want.1, want.2), (rows, WIDTH));
        for parser in &PARSERS {
            assert_eq!(
                (parser.decode)(&bytes).bits(),
                want,
                "{} gives other bits than serde_json",
                parser.name
            );
        }
        for parser in &PARSERS {
            let start = Instant::now();
            while start.elapsed() < warm_up {
                black_box((parser.decode)(black_box(&bytes)));
            }
        }
        let iterations = batch_size(&bytes, batch_time);
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); PARSERS.len()];
        for _ in 0..repetitions {
            for (parser, times) in PARSERS.iter().zip(&mut times) {
                times.push(time_batch(parser.decode, &bytes, iterations));
            }
        }
        let medians: Vec<Duration> = times.into_iter().map(median).collect();
        let (serde, sonic) = (medians[1].as_secs_f64(), medians[2].as_secs_f64());
        println!(
            "\n{rows} row(s) of {WIDTH}: {} bytes, {} numbers, {iterations} decodes a batch",
            bytes.len(),
            rows * WIDTH
        );
        println!(
            "{:<26} {:>11} {:>9} {:>15} {:>15}",
            "decoder", "µs/body", "MB/s", "vs serde_json", "vs sonic-rs"
        );
        for (parser, time) in PARSERS.iter().zip(&medians) {
            let seconds = time.as_secs_f64();
            println!(
                "{:<26} {:>11.2} {:>9.0} {:>14.2}x {:>14.2}x",
                parser.name,
                seconds * 1e6,
                bytes.len() as f64 / seconds / 1e6,
                serde / seconds,
                sonic / seconds,
            );
        }
    }
    println!(
        "\n(ratios: how many times faster than the column's decoder; all three gave the same bits)"
    );
}
