//! The outputs a request asks for, and the response that carries them: JSON, or with the
//! binary tensor extension the JSON header (`Inference-Header-Content-Length` bytes) followed
//! by each binary output's raw bytes, in the order of `outputs`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ndarray::Array2;
use serde::Serialize;

use super::infer::HEADER_LENGTH;
use crate::http::error::ApiError;
use crate::http::error::V2Error;
use crate::registry::{ModelEntry, Version};
use crate::serving::labels::labels_of;

/// An output a model can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// `output`: probabilities or values, FP32 `[rows, k]`.
    Output,
    /// `label`: the predicted class per row, BYTES `[rows]` (classifiers only).
    Label,
}

impl OutputKind {
    /// Its name in requests, responses and metadata.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Output => "output",
            OutputKind::Label => "label",
        }
    }

    /// Its datatype.
    pub fn datatype(self) -> &'static str {
        match self {
            OutputKind::Output => "FP32",
            OutputKind::Label => "BYTES",
        }
    }
}

/// The outputs to answer, in order, each with whether it goes as binary.
#[derive(Debug)]
pub struct Plan(Vec<(OutputKind, bool)>);

impl Plan {
    /// Every output of `available` (with `binary_output`) when `requested` is `None` or empty
    /// (the protocol: "if not specified all outputs … will be returned"), else those asked for
    /// by name, each binary as its own `binary_data` says or else as `binary_output` does.
    ///
    /// # Errors
    /// 400 for an output the model does not have, or one asked for twice.
    pub fn new(
        available: Vec<OutputKind>,
        requested: Option<Vec<(String, Option<bool>)>>,
        binary_output: bool,
    ) -> Result<Self, V2Error> {
        let Some(requested) = requested.filter(|r| !r.is_empty()) else {
            return Ok(Plan(
                available.into_iter().map(|k| (k, binary_output)).collect(),
            ));
        };
        let mut plan: Vec<(OutputKind, bool)> = Vec::with_capacity(requested.len());
        for (name, binary) in requested {
            let Some(&kind) = available.iter().find(|k| k.name() == name) else {
                let names: Vec<_> = available
                    .iter()
                    .map(|k| format!("'{}'", k.name()))
                    .collect();
                return Err(V2Error::bad_request(format!(
                    "unknown output '{name}': this model version has the outputs {}",
                    names.join(", ")
                )));
            };
            if plan.iter().any(|(k, _)| *k == kind) {
                return Err(V2Error::bad_request(format!(
                    "output '{name}' is asked for twice"
                )));
            }
            plan.push((kind, binary.unwrap_or(binary_output)));
        }
        Ok(Plan(plan))
    }
}

#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
}

#[derive(Serialize)]
struct OutputTensor<'a> {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Fp32(&'a [f32]),
    Bytes(&'a [String]),
}

/// The response for `outputs` (the model's predictions) as `plan` asks.
///
/// # Errors
/// 500 only (a response that cannot be built is a bug).
pub fn encode(
    entry: &ModelEntry,
    version: &Version,
    id: Option<&str>,
    plan: &Plan,
    outputs: &Array2<f32>,
) -> Result<Response, V2Error> {
    let rows = outputs.nrows();
    let standard = outputs.as_standard_layout();
    let values = standard
        .as_slice()
        .ok_or_else(|| ApiError::internal("outputs not contiguous"))?;
    let labels: Vec<String> = if plan.0.iter().any(|(k, _)| *k == OutputKind::Label) {
        labels_of(&version.model, outputs, false)
            .unwrap_or_default()
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut binary = Vec::new();
    let mut tensors = Vec::with_capacity(plan.0.len());
    for &(kind, as_binary) in &plan.0 {
        let (shape, data) = match kind {
            OutputKind::Output => (vec![rows, outputs.ncols()], Data::Fp32(values)),
            OutputKind::Label => (vec![rows], Data::Bytes(&labels)),
        };
        let (parameters, data) = if as_binary {
            let start = binary.len();
            match data {
                Data::Fp32(v) => v.iter().for_each(|x| binary.extend(x.to_le_bytes())),
                Data::Bytes(v) => {
                    for s in v {
                        let len = u32::try_from(s.len()).map_err(ApiError::internal)?;
                        binary.extend(len.to_le_bytes());
                        binary.extend(s.as_bytes());
                    }
                }
            }
            let size = binary.len() - start;
            (
                Some(BinaryParameters {
                    binary_data_size: size,
                }),
                None,
            )
        } else {
            (None, Some(data))
        };
        tensors.push(OutputTensor {
            name: kind.name(),
            datatype: kind.datatype(),
            shape,
            parameters,
            data,
        });
    }
    let header = InferResponse {
        model_name: &entry.record.name,
        model_version: version.info.version.to_string(),
        id,
        outputs: tensors,
    };
    let mut body = serde_json::to_vec(&header).map_err(ApiError::internal)?;
    if plan.0.iter().all(|(_, b)| !b) {
        let content_type = HeaderValue::from_static("application/json");
        return Ok(([(header::CONTENT_TYPE, content_type)], body).into_response());
    }
    let json_length = body.len();
    body.extend(binary);
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_length),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OutputKind::{Label, Output};

    fn plan(requested: Option<Vec<(&str, Option<bool>)>>, binary: bool) -> Result<Plan, V2Error> {
        let requested = requested.map(|r| r.into_iter().map(|(n, b)| (n.to_owned(), b)).collect());
        Plan::new(vec![Output, Label], requested, binary)
    }

    #[test]
    fn no_or_an_empty_list_of_outputs_means_all_of_them() {
        assert_eq!(
            plan(None, true).unwrap().0,
            vec![(Output, true), (Label, true)]
        );
        assert_eq!(
            plan(Some(vec![]), false).unwrap().0,
            vec![(Output, false), (Label, false)]
        );
    }

    #[test]
    fn an_output_s_own_binary_data_wins_over_the_request_s() {
        let p = plan(Some(vec![("label", None), ("output", Some(false))]), true).unwrap();
        assert_eq!(p.0, vec![(Label, true), (Output, false)]);
        let p = plan(Some(vec![("output", Some(true))]), false).unwrap();
        assert_eq!(p.0, vec![(Output, true)]);
    }

    #[test]
    fn unknown_and_repeated_outputs_are_refused() {
        assert!(plan(Some(vec![("scores", None)]), false).is_err());
        assert!(plan(Some(vec![("output", None), ("output", Some(true))]), false).is_err());
    }
}
