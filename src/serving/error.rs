//! Why a prediction has no outputs; `http` decides the status of each.

use crate::nn::NnError;
use crate::registry::RegistryError;

/// Why a prediction has no outputs.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// No such model, or a model whose stored files cannot be loaded.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The version asked for (the latest, when none was) cannot be loaded from storage.
    #[error("version {version} of model '{model}' is stored but unavailable: {reason}")]
    VersionUnavailable {
        /// The model's name.
        model: String,
        /// The version.
        version: u32,
        /// Why its files cannot be loaded.
        reason: String,
    },
    /// The latest version was asked for, and the model has none yet.
    #[error("model '{model}' has no trained version yet")]
    NotTrained {
        /// The model's name.
        model: String,
    },
    /// The model has no version of that number (or name).
    #[error("model '{model}' has no version '{version}'")]
    NoSuchVersion {
        /// The model as the request named it (a name or an id).
        asked: String,
        /// The model's name.
        model: String,
        /// The version as the request named it.
        version: String,
        /// Whether the model has any trained version at all.
        trained: bool,
    },
    /// More rows than `--max-predict-rows`.
    #[error("{given} rows, over the limit of {max}")]
    TooManyRows {
        /// The limit.
        max: usize,
        /// The rows given.
        given: usize,
    },
    /// The rows do not fit the model (width, finiteness, none at all).
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the value, as the `/v1` body names it (`inputs[3]`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The forward pass refused the rows.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// Every slot is taken and the queue is full, or the wait for a slot ran out: the server
    /// is saturated.
    #[error("{slots} predictions are being computed and no slot came free ({queue} may wait, for up to {max_wait:?})")]
    Busy {
        /// Predictions computed at once.
        slots: usize,
        /// Predictions that may wait.
        queue: usize,
        /// The longest wait.
        max_wait: std::time::Duration,
    },
    /// A bug or a lost task: logged, never shown to a client.
    #[error("{0}")]
    Internal(String),
}
