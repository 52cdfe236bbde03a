//! mlp-lab: train multilayer perceptrons over HTTP, serve their predictions, and measure how
//! activation functions shape training.
//!
//! Layers, each importing only the ones below it:
//! - [`nn`]: the numerical core (pure, deterministic, no async).

pub mod nn;
