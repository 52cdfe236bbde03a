//! How much memory `fit` takes besides the dataset it trains on: a counting allocator sees
//! every heap allocation of this test binary, which holds this one test so that nothing else
//! allocates meanwhile. Heap bytes, not RSS: the count is the same on every run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use mlp_lab::nn::rng::Rng;
use mlp_lab::nn::{
    fit, Activation, Control, Dataset, Head, Interrupter, Model, ModelSpec, Targets, TrainConfig,
};
use ndarray::Array2;

/// The system allocator, counting the bytes live and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn fit_trains_on_the_dataset_in_place_without_copying_its_rows() {
    // Arrange: 10,000 rows × 256 features (10 MB of f32), a validation and a test part, and
    // standardization, which used to work on a copy of every part.
    let (rows, features) = (10_000, 256);
    let mut rng = Rng::new(3);
    let x = Array2::from_shape_fn((rows, features), |_| rng.uniform_range(-1.0, 1.0) as f32);
    let labels: Vec<String> = (0..rows).map(|i| (i % 3).to_string()).collect();
    let data = Dataset::new(x, None, Targets::from_labels(&labels)).unwrap();
    let dataset_bytes = rows * features * std::mem::size_of::<f32>();
    let model = Model::new(
        ModelSpec::new(&[features, 8, 3], Activation::Relu, Head::Softmax),
        0,
    )
    .unwrap();
    let config = TrainConfig {
        epochs: 2,
        batch_size: 64,
        validation_split: 0.2,
        test_split: 0.1,
        standardize: true,
        ..TrainConfig::default()
    };

    // Act
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let (_model, report) = fit(model, &data, &config, &Interrupter::new(), &mut |_| {
        Control::Continue
    })
    .unwrap();
    let extra = PEAK.load(Ordering::Relaxed) - before;

    // Assert: index lists, one batch and one evaluation chunk (~0.7 MB here), not a copy of
    // the training rows (7 MB) or of the whole dataset.
    assert!(report.rows.iter().all(|&n| n > 0), "{:?}", report.rows);
    assert!(
        extra < dataset_bytes / 4,
        "fit allocated {extra} bytes at its peak besides a dataset of {dataset_bytes} bytes"
    );
}
