//! The numerical core: multilayer perceptrons on `ndarray`, trained deterministically.
//!
//! Pure: no async, no locks, no HTTP types. A data scientist can use it as a library:
//! build a [`ModelSpec`], get a [`Dataset`] (inline, generated or built-in), and call [`fit`].
//!
//! One concept a file: [`activation`], [`aligned`] (parameter storage on cache lines), [`head`] (output layer + loss), [`init`], [`optim`]
//! (optimizers), [`schedule`] (learning rates), [`data`] (datasets, splits, standardization),
//! [`generators`] and [`builtin`] (data to learn), [`model`] (parameters and inference),
//! [`train`] (the training loop and its diagnostics), [`serialize`] (model files),
//! [`import`] (weights made elsewhere, checked against a spec), [`header`] (a weights file
//! judged by its header before its data is read), [`onnx`] (ONNX export),
//! [`product`] (matrix products with the same bits on every machine, through the `gemm`
//! crate), [`linalg`] (few-row products, elementwise kernels), [`isa`] (the instruction set
//! they use), [`parallel`] (the threads that help with large products), [`vmath`]
//! (`exp`, `tanh` and their relatives in a form that vectorizes), [`fpenv`] (subnormals
//! flushed to zero on the threads that compute).

pub mod activation;
pub mod aligned;
pub mod backprop;
pub mod builtin;
pub mod data;
pub mod error;
pub mod fpenv;
pub mod generators;
pub mod head;
pub mod header;
pub mod import;
pub mod init;
pub mod isa;
pub mod linalg;
pub mod model;
pub mod onnx;
pub mod optim;
pub mod parallel;
pub mod product;
pub mod rng;
pub mod schedule;
pub mod serialize;
pub mod train;
pub mod vmath;

pub use activation::Activation;
pub use data::{Dataset, Split, Standardizer, Targets, Task};
pub use error::NnError;
pub use head::{Head, Metrics};
pub use init::Init;
pub use model::{Model, ModelSpec, NetworkLimits};
pub use optim::OptimizerConfig;
pub use schedule::Schedule;
pub use train::{
    fit, Control, EarlyStopping, EpochRecord, FitReport, FitSummary, Interrupter, TrainConfig,
};
