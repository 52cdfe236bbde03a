//! The one error type of the numerical core.
//!
//! Variants carry what a caller needs to say precisely what was wrong (the field, the expected
//! and the given shape, the row and column), so that the HTTP layer can map them to a clear 4xx
//! without parsing strings.

use thiserror::Error;

/// Everything that can go wrong in `nn`.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum NnError {
    /// A configuration or spec value is out of its valid range.
    #[error("{field}: {message}")]
    Invalid {
        /// The path of the offending value, e.g. `layers[1]` or `batch_size`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// Two shapes that must agree do not.
    #[error("{what}: expected shape {expected:?}, got {got:?}")]
    Shape {
        /// Which tensor or input.
        what: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape it was given.
        got: Vec<usize>,
    },
    /// A data value is not finite or too large.
    #[error("{what} at row {row}, column {column}: {message}")]
    BadValue {
        /// Which array (`features`, `targets`, `inputs`).
        what: String,
        /// Zero-based row.
        row: usize,
        /// Zero-based column.
        column: usize,
        /// Why the value was refused.
        message: String,
    },
    /// Training produced a non-finite loss or weight.
    #[error("training diverged at epoch {epoch}: {message}; {hint}")]
    Diverged {
        /// The epoch in which it happened (1-based).
        epoch: usize,
        /// What became non-finite.
        message: String,
        /// What usually helps.
        hint: String,
    },
    /// Training was stopped through the interrupter before it finished.
    #[error("training was cancelled at epoch {epoch}")]
    Cancelled {
        /// The epoch that was running.
        epoch: usize,
    },
    /// A model file could not be read.
    #[error("model file: {0}")]
    Format(String),
}

impl NnError {
    /// Shorthand for [`NnError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `Result` with [`NnError`].
pub type Result<T, E = NnError> = std::result::Result<T, E>;
