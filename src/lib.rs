//! mlp-lab: train multilayer perceptrons over HTTP, serve their predictions, and measure how
//! activation functions shape training.
//!
//! Layers, each importing only the ones below it:
//! - [`http`]: the router, handlers per resource, extractors and the one mapping of errors to
//!   HTTP statuses (`application/problem+json`). The only layer that knows HTTP.
//! - [`jobs`]: the training queue and runner (blocking pool, semaphore, cancellation,
//!   progress and live events).
//! - [`registry`]: datasets, model specs and trained versions, written through to a store.
//! - [`experiments`]: grids of jobs (activations, inits, depths… × seeds) and their
//!   leaderboards with paired tests.
//! - [`store`]: the one seam to durable state (the data directory, or memory), with the
//!   checksummed envelope records are written in and the clock they are stamped with.
//!   Nothing above it reads or writes the data directory.
//! - [`nn`]: the numerical core (pure, deterministic, no async).
//!
//! Beside them, [`config`] holds the flags (with `MLP_LAB_…` environment fallbacks) and the
//! limits every layer enforces.

pub mod config;
pub mod experiments;
pub mod http;
pub mod jobs;
pub mod nn;
pub mod plot;
pub mod registry;
pub mod store;
