//! Where a prediction is computed: the rules [`Predictor`](super::Predictor) follows.
//!
//! - A request of at most [`FEW_ROWS`] rows for a model that gains from it ([`batched`]) joins
//!   the batcher's queue, to share one product with the requests that arrive with it.
//! - Any other request of up to [`INLINE_ROWS`] rows is computed right on the async worker: a
//!   row takes microseconds, less than handing it to another thread would.
//! - Larger ones go to the blocking pool, so that no worker thread stalls its connections.

use std::sync::OnceLock;

use crate::config::Batching;
use crate::nn::linalg::FEW_ROWS;
use crate::nn::Model;

/// Rows up to which a prediction that is not batched is computed on the async worker.
pub const INLINE_ROWS: usize = 64;

/// Whether a request of `rows` rows for `model` goes through the batcher under `mode`.
pub fn batched(mode: Batching, model: &Model, rows: usize) -> bool {
    rows <= FEW_ROWS
        && match mode {
            Batching::Never => false,
            Batching::Always => true,
            Batching::Auto => {
                static THRESHOLD: OnceLock<usize> = OnceLock::new();
                multiply_adds(model) >= *THRESHOLD.get_or_init(|| auto_threshold(l2_bytes()))
            }
        }
}

/// Under `--batch-predictions auto`, the multiply-adds a row (as many as the network has
/// weights) from which requests are batched, on a core with `l2` bytes of L2 cache: weights
/// of at least three quarters of it. Below that a one-row pass reads them from L2 and the
/// queue's wake-ups cost more than a shared read saves; above it they do not stay in L2
/// beside the network buffers and the connections' own memory, and a shared read pays.
/// `bench/batching.sh` measures both sides of the threshold; its figures, per machine, are in
/// `docs/benchmarks.md`.
fn auto_threshold(l2: usize) -> usize {
    l2 / 4 * 3 / 4
}

/// One core's L2 cache in bytes, from Linux's sysfs; 2 MiB (the larger of the caches we
/// measured on) where it cannot be read.
fn l2_bytes() -> usize {
    const FALLBACK: usize = 2 << 20;
    (0..8)
        .find_map(|index| {
            let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
            let level = std::fs::read_to_string(format!("{dir}/level")).ok()?;
            let kind = std::fs::read_to_string(format!("{dir}/type")).ok()?;
            (level.trim() == "2" && kind.trim() != "Instruction")
                .then(|| parse_cache_size(&std::fs::read_to_string(format!("{dir}/size")).ok()?))
                .flatten()
        })
        .unwrap_or(FALLBACK)
}

/// A sysfs cache size: `1024K`, `2M`, or bytes.
fn parse_cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 1 << 10),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// Multiply-adds of one row's forward pass.
pub(crate) fn multiply_adds(model: &Model) -> usize {
    let layers = &model.spec.layers;
    layers.windows(2).map(|w| w[0].saturating_mul(w[1])).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Activation, Head, ModelSpec};

    #[test]
    fn auto_batches_networks_whose_weights_fill_three_quarters_of_a_cores_l2() {
        // 784-256-128-10: 234,752 multiply-adds, 940 KB of weights.
        let w2 = 784 * 256 + 256 * 128 + 128 * 10;
        // `bench/batching.sh`: batching gained with 1 MiB of L2 and lost with 2 MiB.
        assert!(w2 >= auto_threshold(1 << 20));
        assert!(w2 < auto_threshold(2 << 20));
        // 784-512-512-10, which gained with 2 MiB.
        assert!(784 * 512 + 512 * 512 + 512 * 10 >= auto_threshold(2 << 20));
        for (text, bytes) in [("1024K\n", 1 << 20), ("2M", 2 << 20), ("512", 512)] {
            assert_eq!(parse_cache_size(text), Some(bytes));
        }
        assert_eq!(parse_cache_size("K"), None);
        assert_eq!(parse_cache_size(""), None);
        // Whatever this machine has, it reads as a cache size.
        assert!(l2_bytes() >= 64 << 10);
    }

    #[test]
    fn auto_batches_networks_whose_weights_outgrow_a_core_cache() {
        let spec = |layers: &[usize]| ModelSpec::new(layers, Activation::Relu, Head::Softmax);
        // 69 KB of weights, and 7.4 MB: inside and outside any core's L2 we know of (the
        // 940 KB of 784-256-128-10 are batched or not by the cache, as the test above shows).
        let small = Model::new(spec(&[64, 128, 64, 10]), 0).expect("valid");
        let wide = Model::new(spec(&[784, 1024, 1024, 10]), 0).expect("valid");
        assert!(!batched(Batching::Auto, &small, 1));
        assert!(batched(Batching::Auto, &wide, 1) && batched(Batching::Auto, &wide, FEW_ROWS));
        assert!(!batched(Batching::Auto, &wide, FEW_ROWS + 1));
        assert!(batched(Batching::Always, &small, 1) && !batched(Batching::Always, &small, 17));
        assert!(!batched(Batching::Never, &wide, 1));
    }
}
