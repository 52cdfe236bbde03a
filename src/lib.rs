//! mlp-lab: train multilayer perceptrons over HTTP, serve their predictions, and measure how
//! activation functions shape training.
//!
//! Layers, each importing only the ones below it:
//! - [`http`]: the router, middleware, handlers per resource, extractors and the one mapping
//!   of errors to HTTP statuses (`application/problem+json`). The only layer that knows HTTP.
//! - [`serving`]: the prediction engine (version lookup, admission, batching, and where a
//!   product is computed); no HTTP in it.
//! - [`experiments`]: grids of jobs (activations, inits, depths… × seeds) and their
//!   leaderboards with paired tests.
//! - [`follower`]: where replicas share a database, the thread that applies the others'
//!   writes to this replica's caches (registry, jobs, experiments).
//! - [`jobs`]: the training queue and runner (blocking pool, semaphore, cancellation,
//!   progress and live events).
//! - [`plot`]: SVG charts of histories, leaderboards and decision boundaries.
//! - [`registry`]: datasets, model specs and trained versions, written through to a store.
//! - [`store`]: the one seam to durable state (the data directory, PostgreSQL, or memory), with the
//!   checksummed envelope records are written in and the clock they are stamped with.
//!   Nothing above it reads or writes the data directory.
//! - [`nn`]: the numerical core (pure, deterministic, no async).
//!
//! Beside them, [`config`] holds the flags (with `MLP_LAB_…` environment fallbacks) and the
//! limits every layer enforces, and [`memory`] gives freed memory back to the system. `docs/architecture.md` draws the layers and says where a new
//! piece of code goes; `tests/architecture.rs` keeps the imports pointing down and free of
//! circles.

pub mod config;
pub mod experiments;
pub mod follower;
pub mod http;
pub mod jobs;
pub mod memory;
pub mod nn;
pub mod plot;
pub mod registry;
pub mod serving;
pub mod store;
