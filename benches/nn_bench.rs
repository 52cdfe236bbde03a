//! Training and inference speed of the numerical core, on the workloads of
//! `../shared/peers` (uniform inputs in [-1, 1], ten random classes, ReLU hidden layers,
//! softmax cross-entropy, Adam lr 1e-3), so that the figures compare with JAX, PyTorch and
//! scikit-learn run in the same sitting (`bench/peers.sh`). Training uses every CPU the
//! process may use, as a job on an idle server does (`taskset -c 0` for one core), or
//! `NN_BENCH_THREADS` of them.
//!
//! `cargo run --release --bin nn-bench -- [w1|w2|w3|lat|all|act|peak]`
//!
//! Each training workload runs one warm-up epoch and then `reps` timed epochs through the real
//! `fit` (diagnostics included) and reports the median. Latency is `Model::predict` on the W2
//! network for 1 and 64 rows, median of 7 rounds, and beside it the floor of a one-row
//! forward pass on this core: the time to read as many floats as the network has weights
//! once, from cache (a one-row product reads each weight once and does one FMA with it), and
//! the time to read them at the rate of a buffer that stays in L2.
//! `act` (not part of `all`) trains W1 once with each hidden activation: what each one costs
//! against ReLU, the activations' own kernels being the difference.
//! `peak` (not part of `all`) times this core's peak rate of `f32` fused multiply-adds, the
//! ceiling of every product above.

use std::sync::Arc;
use std::time::Instant;

use mlp_lab::nn::activation::ACTIVATION_NAMES;
use mlp_lab::nn::aligned::AlignedVec;
use mlp_lab::nn::parallel::{self, Team};
use mlp_lab::nn::rng::Rng;
use mlp_lab::nn::{
    fit, Activation, Control, Dataset, Head, Init, Interrupter, Model, ModelSpec, OptimizerConfig,
    Targets, TrainConfig,
};
use ndarray::Array2;

struct Workload {
    name: &'static str,
    layers: &'static [usize],
    samples: usize,
    batch: usize,
    reps: usize,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "w1",
        layers: &[64, 128, 64, 10],
        samples: 1797,
        batch: 32,
        reps: 20,
    },
    Workload {
        name: "w2",
        layers: &[784, 256, 128, 10],
        samples: 60_000,
        batch: 128,
        reps: 5,
    },
    Workload {
        name: "w3",
        layers: &[1024, 1024, 1024, 10],
        samples: 20_000,
        batch: 256,
        reps: 3,
    },
];

fn data(inputs: usize, samples: usize) -> Dataset {
    let mut rng = Rng::new(0);
    let x = Array2::from_shape_fn((samples, inputs), |_| rng.uniform_range(-1.0, 1.0) as f32);
    let labels: Vec<String> = (0..samples).map(|_| rng.below(10).to_string()).collect();
    Dataset::new(x, None, Targets::from_labels(&labels)).expect("valid data")
}

fn spec(layers: &[usize], act: Activation) -> ModelSpec {
    let mut s = ModelSpec::new(layers, act, Head::Softmax);
    s.init = Some(Init::XavierUniform); // as the peers initialize
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Trains `w` with hidden activation `act` and prints its rate, named `label`.
fn train(w: &Workload, act: Activation, label: &str) {
    let d = data(w.layers[0], w.samples);
    let config = TrainConfig {
        epochs: w.reps + 1,
        batch_size: w.batch,
        optimizer: OptimizerConfig::adam(1e-3),
        validation_split: 0.0,
        standardize: false,
        ..TrainConfig::default()
    };
    let model = Model::new(spec(w.layers, act), 0).expect("valid spec");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = std::env::var("NN_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(cores)
        .max(1);
    parallel::set_cores(threads);
    let team = Team::new(threads - 1, Arc::new(|| {})).expect("helper threads start");
    let _entered = team.enter();
    let (_, report) = fit(model, &d, &config, &Interrupter::new(), &mut |_| {
        Control::Continue
    })
    .expect("training runs");
    let times: Vec<f64> = report.history[2..].iter().map(|r| r.seconds).collect();
    let med = median(times.clone());
    println!(
        "mlp-lab\t{label}\tbatch={}\tthreads={threads}\tsamples/s={:.0}\t(epoch med {med:.4}s reps {:?})\tloss={:.3}",
        w.batch,
        w.samples as f64 / med,
        times
            .iter()
            .map(|t| (t * 1e4).round() / 1e4)
            .collect::<Vec<_>>(),
        report.history.last().map_or(f64::NAN, |r| r.train_loss),
    );
}

fn latency() {
    let model = Model::new(spec(&[784, 256, 128, 10], Activation::Relu), 0).expect("valid spec");
    let mut rng = Rng::new(1);
    for rows in [1usize, 4, 8, 16, 64] {
        let x = Array2::from_shape_fn((rows, 784), |_| rng.uniform_range(-1.0, 1.0) as f32);
        for _ in 0..200 {
            std::hint::black_box(model.predict(x.view()).expect("predicts"));
        }
        let iters = if rows == 1 { 2000 } else { 500 };
        let rounds: Vec<f64> = (0..7)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(model.predict(x.view()).expect("predicts"));
                }
                t.elapsed().as_secs_f64() / iters as f64
            })
            .collect();
        println!(
            "mlp-lab\tlatency W2 forward rows={rows}\t{:.2} us",
            median(rounds) * 1e6
        );
    }
    weight_read_floor(&model);
}

/// Reads `xs` (a multiple of 128 long) once, into eight independent vector sums: as many
/// loads as the slice has vectors and nothing else, with AVX-512 where the core has it.
fn read_once(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was detected just above.
        return unsafe { read_once_avx512(xs) };
    }
    let mut lanes = [0f32; 128];
    for chunk in xs.chunks_exact(128) {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn read_once_avx512(xs: &[f32]) -> f32 {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_loadu_ps, _mm512_reduce_add_ps, _mm512_setzero_ps,
    };
    let mut acc = [_mm512_setzero_ps(); 8];
    for chunk in xs.chunks_exact(128) {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: 16 floats from 16·k, inside the 128 of `chunk`.
            *a = _mm512_add_ps(*a, unsafe { _mm512_loadu_ps(chunk.as_ptr().add(16 * k)) });
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

/// The median of 7 rounds of `reads` reads of `xs` ([`read_once`]), in seconds a read, after
/// `warm_up` reads.
fn seconds_per_read(xs: &[f32], warm_up: usize, reads: usize) -> f64 {
    for _ in 0..warm_up {
        std::hint::black_box(read_once(std::hint::black_box(xs)));
    }
    let rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reads {
                std::hint::black_box(read_once(std::hint::black_box(xs)));
            }
            t.elapsed().as_secs_f64() / reads as f64
        })
        .collect();
    median(rounds)
}

/// The time to read the W2 weights once, median of 7 rounds of 2,000 after a warm-up, in the
/// same cache level as `predict` finds them (under 1 MB: L2 on most cores) and with the same
/// alignment.
fn weight_read_floor(model: &Model) {
    let count = model
        .spec
        .parameter_count()
        .expect("W2 has a parameter count");
    // From a cache-line boundary, as the model keeps its weights: from a plain `Vec` every
    // 64-byte load would straddle two lines, and the floor read 1.7–2.0× higher that way.
    let weights = AlignedVec::from_elem(1.0, count.next_multiple_of(128));
    let secs = seconds_per_read(&weights, 200, 2000);
    println!(
        "mlp-lab\tfloor W2 weights read once ({count} floats, {:.0} GB/s)\t{:.2} us",
        (count * 4) as f64 / secs / 1e9,
        secs * 1e6
    );
    // The same bytes at the rate the core reads a buffer that stays in its L2 (a quarter of
    // the smallest L2 in use, 256 KB): the floor even if the weights never left L2. On the
    // AMD EPYC machine of 2026-11-29 (1 MiB L2 a core) it read 118 GB/s, L1 210 GB/s: 939 KB
    // of W2 weights then take 7.96 µs.
    let small = AlignedVec::from_elem(1.0, (256 << 10) / 4);
    let rate = (small.len() * 4) as f64 / seconds_per_read(&small, 2000, 8000);
    println!(
        "mlp-lab\tfloor W2 weights read at L2 speed (256 KB read at {:.0} GB/s)\t{:.2} us",
        rate / 1e9,
        (count * 4) as f64 / rate * 1e6
    );
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    for w in WORKLOADS {
        if which == "all" || which == w.name {
            train(w, Activation::Relu, w.name);
        }
    }
    if which == "act" {
        // Every hidden activation at its default parameters (identity too: the floor).
        for name in ACTIVATION_NAMES {
            let act = Activation::from_name(name).expect("a listed activation");
            train(&WORKLOADS[0], act, &format!("w1 {}", act.name()));
        }
    }
    if which == "all" || which == "lat" {
        latency();
    }
    if which == "peak" {
        fma_peak();
    }
}

/// The core's peak of `f32` multiply-adds: twelve independent accumulators of sixteen lanes
/// (AVX-512), or of eight values in portable code elsewhere, enough to hide the FMA latency on
/// the cores we run on, in registers, so that nothing but the multiply-adds runs; median of 7
/// rounds, 2 FLOP each.
fn fma_peak() {
    const ACCUMULATORS: usize = 12;
    const STEPS: usize = 1 << 22;
    #[cfg(target_arch = "x86_64")]
    let lanes = if std::arch::is_x86_feature_detected!("avx512f") {
        16
    } else {
        8
    };
    // The portable loop's accumulators hold eight values each.
    #[cfg(not(target_arch = "x86_64"))]
    let lanes = 8;
    let run = |steps: usize| -> f32 {
        #[cfg(target_arch = "x86_64")]
        if lanes == 16 {
            // SAFETY: the feature was detected above.
            return unsafe { fma_loop_avx512::<ACCUMULATORS>(steps) };
        }
        let mut acc = [[0f32; 8]; ACCUMULATORS];
        for _ in 0..steps {
            for a in acc.iter_mut() {
                for v in a.iter_mut() {
                    *v = v.mul_add(0.999_999, 1e-7);
                }
            }
        }
        acc.iter().flatten().sum()
    };
    std::hint::black_box(run(STEPS / 8));
    let rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(run(std::hint::black_box(STEPS)));
            t.elapsed().as_secs_f64()
        })
        .collect();
    let flops = (2 * STEPS * ACCUMULATORS * lanes) as f64;
    println!(
        "mlp-lab\tFMA peak one core ({ACCUMULATORS} accumulators x {lanes} lanes)\t{:.1} GFLOP/s",
        flops / median(rounds) / 1e9
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512<const A: usize>(steps: usize) -> f32 {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_reduce_add_ps, _mm512_set1_ps};
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(0.0); A];
    for _ in 0..steps {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
}
