//! `POST /v1/models/{model}/predict`: outputs and labels from the latest (or a given) version.
//!
//! The version's `Arc<Model>` is cloned out of the registry and the lock released before any
//! computing, so predictions never wait on training. Requests of up to 16 rows for a large
//! enough model go through the batcher ([`super::batching`]: those that arrive together share
//! one product, per `--batch-predictions`); others of up to 64 rows are computed right on the
//! async worker (a row takes microseconds); larger ones go to the blocking pool.
//!
//! `outputs` are probabilities for `softmax` and `sigmoid` heads and values for `identity`;
//! `output_names` names their columns (for a two-class sigmoid head, its one column is the
//! probability of the second class). `labels` is one entry per row for classifiers: the
//! predicted class as the dataset named it (a number if the labels were numbers, a string if
//! they were strings), or for multi-label heads the list of labels with probability ≥ 0.5;
//! regression answers have no `labels`.

use std::borrow::Cow;

use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ndarray::{Array2, ArrayView1, ArrayView2};
use row_json::{parse_predict, Fallback, FastPredict, PredictStream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::batching::batched;
use super::error::ApiError;
use super::error_map::blocking;
use super::extract::{from_json_slice, read_body_with, require_json, AppJson, AppPath};
use super::AppState;
use crate::config::Limit;
use crate::nn::{Model, Task};

/// Rows above which a prediction moves to the blocking pool.
const INLINE_ROWS: usize = 64;

/// A prediction request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// Rows of raw (unstandardized) features.
    pub inputs: Vec<Vec<f64>>,
    /// The version to use (default: the latest).
    pub version: Option<u32>,
}

/// A prediction, borrowing what it can from the model (it is serialized at once).
#[derive(Debug, Serialize)]
pub struct PredictResponse<'a> {
    /// The model's name.
    pub model: &'a str,
    /// The model's id.
    pub model_id: uuid::Uuid,
    /// The version used.
    pub version: u32,
    /// One row per input row.
    pub outputs: Rows<'a>,
    /// What each output column is.
    pub output_names: Cow<'a, [String]>,
    /// The predicted label per row (classifiers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Value>>,
}

/// The rows of a matrix, serialized as an array of arrays without copying them.
#[derive(Debug)]
pub struct Rows<'a>(pub ArrayView2<'a, f32>);

impl Serialize for Rows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.nrows()))?;
        for row in self.0.rows() {
            match row.as_slice() {
                Some(values) => seq.serialize_element(values)?,
                None => seq.serialize_element(&row.to_vec())?,
            }
        }
        seq.end()
    }
}

/// See [`PredictBody::outcome`].
pub(crate) type Outcome = Result<(Vec<Vec<u32>>, Option<u32>), String>;

/// A prediction body, decoded by [`parse_predict`] when it has the plain shape (the usual
/// case, several times faster), otherwise by serde with errors that name the field.
pub struct PredictBody {
    inputs: Inputs,
    version: Option<u32>,
}

enum Inputs {
    Flat {
        values: Vec<f32>,
        rows: usize,
        width: usize,
    },
    Nested(Vec<Vec<f64>>),
}

impl Inputs {
    fn rows(&self) -> usize {
        match self {
            Inputs::Flat { rows, .. } => *rows,
            Inputs::Nested(rows) => rows.len(),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for PredictBody {
    type Rejection = ApiError;

    /// The body is parsed piece by piece as it is read ([`PredictStream`]), and no piece is
    /// kept; one that the stream does not take is decoded from its [`Fallback`] as
    /// [`PredictBody::decode`] decodes the whole body.
    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        require_json(request.headers())?;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let mut stream = PredictStream::new(declared);
        read_body_with(request, |piece| stream.feed(&piece)).await?;
        PredictBody::streamed(stream)
    }
}

impl PredictBody {
    fn fast(fast: FastPredict) -> Self {
        PredictBody {
            inputs: Inputs::Flat {
                values: fast.values,
                rows: fast.rows,
                width: fast.width,
            },
            version: fast.version,
        }
    }

    /// The body a [`PredictStream`] was fed: what it read, or else its [`Fallback`] decoded,
    /// with the values of the rows the stream read written over their zeros. Answers and
    /// errors are those of [`PredictBody::decode`] for the whole body.
    pub(crate) fn streamed(stream: PredictStream) -> Result<Self, ApiError> {
        match stream.finish() {
            Ok(fast) => Ok(PredictBody::fast(fast)),
            Err(fallback) => PredictBody::from_fallback(fallback),
        }
    }

    /// [`Fallback::body`] decoded, with [`Fallback::values`] written over its zero rows.
    pub(crate) fn from_fallback(fallback: Fallback) -> Result<Self, ApiError> {
        let mut body = PredictBody::decode(&fallback.body)?;
        let (read, width) = (fallback.rows, fallback.width);
        if read == 0 {
            return Ok(body);
        }
        // The zero rows parse as rows of `width` values, so the shapes agree; were they not
        // (a mistake here), the request fails rather than computing on zeros.
        let mistake = || {
            ApiError::internal(format!(
                "the {read} rows of {width} values the body stream read are not the body's"
            ))
        };
        if fallback.values.len() != read * width {
            return Err(mistake());
        }
        match &mut body.inputs {
            Inputs::Flat {
                values,
                rows,
                width: w,
            } if *w == width && *rows >= read => {
                values[..read * width].copy_from_slice(&fallback.values);
            }
            Inputs::Nested(rows)
                if rows.len() >= read && rows[..read].iter().all(|r| r.len() == width) =>
            {
                for (row, given) in rows.iter_mut().zip(fallback.values.chunks_exact(width)) {
                    for (v, g) in row.iter_mut().zip(given) {
                        *v = f64::from(*g);
                    }
                }
            }
            _ => return Err(mistake()),
        }
        Ok(body)
    }

    /// Decodes a body: the fast path first, serde for anything else.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, ApiError> {
        if let Some(fast) = parse_predict(bytes) {
            return Ok(PredictBody::fast(fast));
        }
        let request: PredictRequest = from_json_slice(bytes)?;
        Ok(PredictBody {
            inputs: Inputs::Nested(request.inputs),
            version: request.version,
        })
    }

    /// A decoding as two decodings of one body are compared: the rows as the bits of the
    /// `f32`s [`PredictBody::into_matrix`] makes of their values, and the version; or the
    /// error as it prints.
    pub(crate) fn outcome(decoded: Result<Self, ApiError>) -> Outcome {
        let body = decoded.map_err(|e| format!("{e:?}"))?;
        #[allow(clippy::cast_possible_truncation)] // as `matrix` narrows them
        let rows = match &body.inputs {
            Inputs::Flat { values, width, .. } => values
                .chunks_exact(*width)
                .map(|row| row.iter().map(|v| v.to_bits()).collect())
                .collect(),
            Inputs::Nested(rows) => rows
                .iter()
                .map(|row| row.iter().map(|&v| (v as f32).to_bits()).collect())
                .collect(),
        };
        Ok((rows, body.version))
    }

    /// The inputs as a matrix of `width` columns, as [`predict`] checks them.
    pub(crate) fn into_matrix(self, width: usize) -> Result<Array2<f32>, ApiError> {
        matrix(self.inputs, width)
    }
}

fn wrong_width(rows: usize, width: usize, row: usize, given: usize) -> ApiError {
    ApiError::validation(
        format!("inputs[{row}]"),
        format!(
            "expected shape [{rows}, {width}] (the model takes {width} inputs), got a row of \
             {given} values"
        ),
    )
}

/// The inputs as a matrix of the model's width, every value finite.
fn matrix(inputs: Inputs, width: usize) -> Result<Array2<f32>, ApiError> {
    let rows = inputs.rows();
    if rows == 0 {
        return Err(ApiError::validation("inputs", "expected at least one row"));
    }
    let flat = match inputs {
        // The fast path already checked that every value is a finite f32.
        Inputs::Flat { width: w, .. } if w != width => return Err(wrong_width(rows, width, 0, w)),
        Inputs::Flat { values, .. } => values,
        Inputs::Nested(nested) => {
            let mut flat = Vec::with_capacity(rows.saturating_mul(width));
            for (r, row) in nested.iter().enumerate() {
                if row.len() != width {
                    return Err(wrong_width(rows, width, r, row.len()));
                }
                for (c, &v) in row.iter().enumerate() {
                    let x = v as f32;
                    if !x.is_finite() {
                        return Err(ApiError::validation(
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
    Array2::from_shape_vec((rows, width), flat).map_err(ApiError::internal)
}

fn label(name: &str, numeric: bool) -> Value {
    if numeric {
        if let Ok(n) = serde_json::from_str::<serde_json::Number>(name) {
            return Value::Number(n);
        }
    }
    Value::String(name.to_owned())
}

pub(crate) fn labels_of(model: &Model, outputs: &Array2<f32>, numeric: bool) -> Option<Vec<Value>> {
    let names = &model.labels;
    let pick = |row: ArrayView1<f32>| -> Value {
        if row.len() == 1 {
            let i = usize::from(row[0] >= 0.5);
            return names.get(i).map_or(Value::Null, |n| label(n, numeric));
        }
        let best =
            row.iter().enumerate().fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &p)| if p > b.1 { (i, p) } else { b },
            );
        names.get(best.0).map_or(Value::Null, |n| label(n, numeric))
    };
    match model.task {
        Some(Task::Classification) => Some(outputs.rows().into_iter().map(pick).collect()),
        Some(Task::MultiLabel) => Some(
            outputs
                .rows()
                .into_iter()
                .map(|row| {
                    Value::Array(
                        row.iter()
                            .zip(names)
                            .filter(|(&p, _)| p >= 0.5)
                            .map(|(_, n)| label(n, false))
                            .collect(),
                    )
                })
                .collect(),
        ),
        _ => None,
    }
}

fn output_names(model: &Model) -> Cow<'_, [String]> {
    let outputs = model.spec.outputs();
    if model.task == Some(Task::Classification) && outputs == 1 && model.labels.len() == 2 {
        return Cow::Borrowed(&model.labels[1..]);
    }
    if model.labels.len() == outputs {
        Cow::Borrowed(&model.labels)
    } else {
        Cow::Owned((0..outputs).map(|i| format!("y{i}")).collect())
    }
}

/// `POST /v1/models/{model}/predict`
pub(crate) async fn predict(
    State(state): State<AppState>,
    AppPath(model): AppPath<String>,
    request: PredictBody,
) -> Result<Response, ApiError> {
    let (entry, version) = state.registry.version(&model, request.version)?;
    let max = state.config.limits.max_predict_rows;
    let rows = request.inputs.rows();
    if rows > max {
        return Err(ApiError::limit_exceeded(
            "inputs",
            Limit::PredictRows,
            max,
            rows,
        ));
    }
    let x = matrix(request.inputs, version.model.spec.inputs())?;
    let net = std::sync::Arc::clone(&version.model);
    let outputs = if batched(state.config.batch_predictions, &net, x.nrows()) {
        state.batcher.predict(net, x, &state.metrics).await?
    } else if x.nrows() <= INLINE_ROWS {
        net.predict_owned(x)?
    } else {
        blocking(move || Ok(net.predict_owned(x)?)).await?
    };
    state.metrics.predicted_rows(outputs.nrows());
    let m = &version.model;
    Ok(AppJson(PredictResponse {
        model: &entry.record.name,
        model_id: entry.record.id,
        version: version.info.version,
        labels: labels_of(m, &outputs, version.info.numeric_labels),
        output_names: output_names(m),
        outputs: Rows(outputs.view()),
    })
    .into_response())
}
