//! `POST /v1/models/{model}/predict`: outputs and labels from the latest (or a given) version.
//!
//! The handler decodes the body ([`PredictBody`]), asks the [`Predictor`](crate::serving::Predictor)
//! (which decides where the product is computed), and encodes the answer: `outputs`, the
//! names of their columns and, for classifiers, a label per row
//! ([`serving::labels`](crate::serving::labels)).

use std::borrow::Cow;

use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ndarray::ArrayView2;
use row_json::{parse_predict, Fallback, FastPredict, PredictStream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::extract::{from_json_slice, read_body_with, require_json, AppJson, AppPath};
use super::state::AppState;
use crate::serving::labels::{labels_of, output_names};
use crate::serving::{Inputs, Selector};

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
#[cfg(any(test, fuzzing))]
pub(crate) type Outcome = Result<(Vec<Vec<u32>>, Option<u32>), String>;

/// A prediction body, decoded by [`parse_predict`] when it has the plain shape (the usual
/// case, several times faster), otherwise by serde with errors that name the field.
pub struct PredictBody {
    inputs: Inputs,
    version: Option<u32>,
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
    #[cfg(any(test, fuzzing))]
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
    #[cfg(any(test, fuzzing))]
    pub(crate) fn into_matrix(self, width: usize) -> Result<ndarray::Array2<f32>, ApiError> {
        Ok(self.inputs.into_matrix(width)?)
    }
}

/// `POST /v1/models/{model}/predict`
pub(crate) async fn predict(
    State(state): State<AppState>,
    AppPath(model): AppPath<String>,
    request: PredictBody,
) -> Result<Response, ApiError> {
    let predictor = &state.predictor;
    let (entry, version) = predictor.resolve(&model, Selector::from_number(request.version))?;
    predictor.check_rows(request.inputs.rows())?;
    let x = request.inputs.into_matrix(version.model.spec.inputs())?;
    let answered = std::sync::Arc::clone(&version);
    predictor
        .predict_then(&version, x, move |outputs| {
            let m = &answered.model;
            Ok(AppJson(PredictResponse {
                model: &entry.record.name,
                model_id: entry.record.id,
                version: answered.info.version,
                labels: labels_of(m, &outputs, answered.info.numeric_labels),
                output_names: output_names(m),
                outputs: Rows(outputs.view()),
            })
            .into_response())
        })
        .await
}
