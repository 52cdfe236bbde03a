//! The rows of a prediction request as a decoder made them, checked against the model into the
//! one matrix the forward pass takes.

use ndarray::Array2;

use super::error::ServingError;

/// Rows of raw (unstandardized) features.
#[derive(Debug)]
pub enum Inputs {
    /// Row-major values that a fast decoder already checked to be finite `f32`s.
    Flat {
        /// `rows × width` values.
        values: Vec<f32>,
        /// Number of rows.
        rows: usize,
        /// Values in every row.
        width: usize,
    },
    /// Rows as a general JSON decoder made them: any lengths, any `f64`.
    Nested(Vec<Vec<f64>>),
}

impl Inputs {
    /// Number of rows.
    #[must_use]
    pub fn rows(&self) -> usize {
        match self {
            Inputs::Flat { rows, .. } => *rows,
            Inputs::Nested(rows) => rows.len(),
        }
    }

    /// The rows as a matrix of `width` columns (the model's inputs), every value a finite
    /// `f32`.
    ///
    /// # Errors
    /// [`ServingError::Invalid`] naming the first row of another width or the first value
    /// that is not a finite `f32`, or no rows at all.
    pub fn into_matrix(self, width: usize) -> Result<Array2<f32>, ServingError> {
        let rows = self.rows();
        if rows == 0 {
            return Err(invalid("inputs", "expected at least one row"));
        }
        let flat = match self {
            // The fast path already checked that every value is a finite f32.
            Inputs::Flat { width: w, .. } if w != width => {
                return Err(wrong_width(rows, width, 0, w))
            }
            Inputs::Flat { values, .. } => values,
            Inputs::Nested(nested) => {
                let mut flat = Vec::with_capacity(rows.saturating_mul(width));
                for (r, row) in nested.iter().enumerate() {
                    if row.len() != width {
                        return Err(wrong_width(rows, width, r, row.len()));
                    }
                    for (c, &v) in row.iter().enumerate() {
                        #[allow(clippy::cast_possible_truncation)] // f32 is what the model takes
                        let x = v as f32;
                        if !x.is_finite() {
                            return Err(invalid(
                                format!("inputs[{r}][{c}]"),
                                format!("row {r}, column {c}: {v} is not a finite 32-bit number"),
                            ));
                        }
                        flat.push(x);
                    }
                }
                flat
            }
        };
        Array2::from_shape_vec((rows, width), flat)
            .map_err(|e| ServingError::Internal(format!("the rows do not make a matrix: {e}")))
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ServingError {
    ServingError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn wrong_width(rows: usize, width: usize, row: usize, given: usize) -> ServingError {
    invalid(
        format!("inputs[{row}]"),
        format!(
            "expected shape [{rows}, {width}] (the model takes {width} inputs), got a row of \
             {given} values"
        ),
    )
}
