//! Decoding an inference request: the JSON header, the binary tensor extension's bytes after
//! it, and the one input tensor as a matrix the model takes.
//!
//! A body is `JSON` or, with `Inference-Header-Content-Length: n`, `n` bytes of JSON followed
//! by the raw little-endian bytes of the inputs whose `parameters.binary_data_size` says so,
//! in the order of `inputs`, without padding. `data` may be flat or nested row-major (only the
//! number of values counts, as in Triton). FP32 and FP64 are accepted; every value becomes the
//! `f32` that `/v1/.../predict` would make of it (a JSON number is read as the correctly
//! rounded `f64` and rounded to `f32`; an FP64 element is rounded to `f32`), so both routes
//! give the same numbers bit for bit.

use axum::http::HeaderMap;
use ndarray::Array2;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::data::{little_endian, tensor_data};
use crate::config::Limit;
use crate::http::error::ApiError;
use crate::http::error::V2Error;
use crate::http::extract::from_json_slice;

/// The header that gives the length of the JSON part of a body, both ways.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The name of the one input of every model.
pub const INPUT: &str = "input";

/// An inference request as sent: the JSON header of the protocol.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    /// Taken apart from the rest, for [`tensor_data`].
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// A decoded request, checked against the model's input width and the row limit.
#[derive(Debug)]
pub struct InferRequest {
    /// Echoed in the response.
    pub id: Option<String>,
    /// The input, `[rows, width]`, every value a finite `f32`.
    pub input: Array2<f32>,
    /// The outputs asked for by name, with their own `binary_data` if given; `None` for all.
    pub outputs: Option<Vec<(String, Option<bool>)>>,
    /// The request's `binary_data_output`: the default of every output.
    pub binary_output: bool,
}

/// The JSON length from `Inference-Header-Content-Length`, if the header is there.
///
/// # Errors
/// 400 when it is not a non-negative integer.
pub fn header_length(headers: &HeaderMap) -> Result<Option<usize>, V2Error> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(V2Error::bad_request(format!(
            "Inference-Header-Content-Length must be the length in bytes of the JSON part of \
             the body, got '{}'",
            String::from_utf8_lossy(value.as_bytes())
        )));
    }
    text.parse().map(Some).map_err(|_| {
        V2Error::bad_request(format!(
            "Inference-Header-Content-Length {text} is larger than any body"
        ))
    })
}

/// Decodes `body` for a model of `width` inputs taking at most `max_rows` rows.
///
/// # Errors
/// 400 naming what is wrong: the JSON, the input's name, datatype or shape, the data's
/// length, the binary part, a value that is not a finite `f32`, the row limit.
pub fn decode(
    body: &[u8],
    json_length: Option<usize>,
    width: usize,
    max_rows: usize,
) -> Result<InferRequest, V2Error> {
    let (json, mut binary) = split(body, json_length)?;
    let request: RequestJson = from_json_slice(json).map_err(V2Error::from)?;
    let params = request.parameters.as_ref();
    let binary_output = flag(params, "binary_data_output", "parameters")?;
    let [input]: [InputJson; 1] = request.inputs.try_into().map_err(|inputs: Vec<_>| {
        V2Error::bad_request(format!(
            "the model takes one input, '{INPUT}'; the request has {}",
            inputs.len()
        ))
    })?;
    let input = matrix(input, &mut binary, width, max_rows)?;
    if !binary.is_empty() {
        return Err(V2Error::bad_request(format!(
            "the body has {} bytes after the JSON and the binary data of the inputs",
            binary.len()
        )));
    }
    let outputs = request.outputs.map(requested_outputs).transpose()?;
    Ok(InferRequest {
        id: request.id,
        input,
        outputs,
        binary_output,
    })
}

/// The JSON part of `body` and the binary part after it.
fn split(body: &[u8], json_length: Option<usize>) -> Result<(&[u8], &[u8]), V2Error> {
    match json_length {
        None => Ok((body, &[])),
        Some(n) if n <= body.len() => Ok(body.split_at(n)),
        Some(n) => Err(V2Error::bad_request(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes",
            body.len()
        ))),
    }
}

/// The input as a `[rows, width]` matrix of finite values, from its `data` or from the front
/// of `binary` (which is advanced past its bytes).
fn matrix(
    input: InputJson,
    binary: &mut &[u8],
    width: usize,
    max_rows: usize,
) -> Result<Array2<f32>, V2Error> {
    if input.name != INPUT {
        return Err(V2Error::bad_request(format!(
            "unknown input '{}': the model takes one input, '{INPUT}'",
            input.name
        )));
    }
    let element = match input.datatype.as_str() {
        "FP32" => 4,
        "FP64" => 8,
        other => {
            return Err(V2Error::bad_request(format!(
                "datatype {other} of input '{INPUT}' is not supported: send FP32 (or FP64, which \
                 is converted to FP32)"
            )))
        }
    };
    let shape = &input.shape;
    let rows = check_shape(shape, width, max_rows)?;
    let too_large =
        || V2Error::bad_request(format!("input '{INPUT}' shape {shape:?} is too large"));
    let count = rows.checked_mul(width).ok_or_else(too_large)?;
    let bytes = count.checked_mul(element).ok_or_else(too_large)?;
    let size = binary_size(input.parameters.as_ref())?;
    let data = input.data.as_deref().map(tensor_data).transpose()?;
    let values = match (size, data) {
        (Some(_), Some(_)) => {
            return Err(V2Error::bad_request(format!(
                "input '{INPUT}' has both `data` and parameters.binary_data_size; send one"
            )))
        }
        (None, None) => {
            return Err(V2Error::bad_request(format!(
                "input '{INPUT}' has no `data` and no parameters.binary_data_size"
            )))
        }
        (None, Some(values)) if values.len() != count => {
            return Err(V2Error::bad_request(format!(
                "input '{INPUT}' has shape {shape:?}, which holds {count} values, but its data \
                 has {}",
                values.len()
            )))
        }
        (None, Some(values)) => values,
        (Some(size), None) if size != bytes as u64 => {
            return Err(V2Error::bad_request(format!(
                "input '{INPUT}' has shape {shape:?} and datatype {}, which take {bytes} bytes, \
                 but its binary_data_size is {size}",
                input.datatype
            )))
        }
        (Some(_), None) if binary.len() < bytes => {
            return Err(V2Error::bad_request(format!(
                "the binary data of input '{INPUT}' is truncated: it takes {bytes} bytes, the \
                 body has {} after the JSON (is Inference-Header-Content-Length set?)",
                binary.len(),
            )))
        }
        (Some(_), None) => {
            let (raw, rest) = binary.split_at(bytes);
            *binary = rest;
            little_endian(raw, element)
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(V2Error::bad_request(format!(
            "input '{INPUT}', row {}, column {}: the value is not a finite 32-bit number",
            i / width,
            i % width
        )));
    }
    Array2::from_shape_vec((rows, width), values).map_err(|e| ApiError::internal(e).into())
}

/// The outputs asked for, each with its own `binary_data` if it has one.
fn requested_outputs(outputs: Vec<OutputJson>) -> Result<Vec<(String, Option<bool>)>, V2Error> {
    outputs
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let params = o.parameters.as_ref();
            if params.is_some_and(|p| p.contains_key("classification")) {
                return Err(V2Error::bad_request(format!(
                    "output '{}': the classification extension is not supported; ask for the \
                     `label` output of a classifier instead",
                    o.name
                )));
            }
            let given = params.is_some_and(|p| p.contains_key("binary_data"));
            let binary = flag(params, "binary_data", &format!("outputs[{i}].parameters"))?;
            Ok((o.name, given.then_some(binary)))
        })
        .collect()
}

/// The number of rows of a shape `[rows, width]`.
fn check_shape(shape: &[i64], width: usize, max_rows: usize) -> Result<usize, V2Error> {
    let wrong = || {
        V2Error::bad_request(format!(
            "input '{INPUT}' has shape {shape:?}; the model takes shape [-1, {width}] (rows of \
             {width} values)"
        ))
    };
    let &[rows, columns] = shape else {
        return Err(wrong());
    };
    if rows < 0 || usize::try_from(columns).ok() != Some(width) {
        return Err(wrong());
    }
    if rows == 0 {
        return Err(V2Error::bad_request(format!(
            "input '{INPUT}' has no rows; send at least one"
        )));
    }
    let rows = usize::try_from(rows).unwrap_or(usize::MAX);
    if rows > max_rows {
        return Err(ApiError::limit_exceeded(
            "inputs[0].shape[0]",
            Limit::PredictRows,
            max_rows,
            rows,
        )
        .into());
    }
    Ok(rows)
}

/// A boolean parameter, `false` when absent.
fn flag(params: Option<&Map<String, Value>>, name: &str, field: &str) -> Result<bool, V2Error> {
    match params.and_then(|p| p.get(name)) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(V2Error::bad_request(format!(
            "{field}.{name} must be true or false, got {other}"
        ))),
    }
}

/// `parameters.binary_data_size` of an input, if given.
fn binary_size(params: Option<&Map<String, Value>>) -> Result<Option<u64>, V2Error> {
    match params.and_then(|p| p.get("binary_data_size")) {
        None => Ok(None),
        // JSON Schema counts `8.0` as the integer 8; so does this.
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && (0.0..9.0e15).contains(f))
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| {
                V2Error::bad_request(format!(
                    "inputs[0].parameters.binary_data_size must be a non-negative integer, got {v}"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(data: &str) -> String {
        format!(
            r#"{{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [2, 2], "data": {data}}}]}}"#
        )
    }

    #[test]
    fn flat_and_nested_data_decode_to_the_same_row_major_matrix() {
        let flat = decode(body("[1, 2.5, -3, 4e-1]").as_bytes(), None, 2, 10).unwrap();
        let nested = decode(body("[[1, 2.5], [-3, 4e-1]]").as_bytes(), None, 2, 10).unwrap();
        assert_eq!(flat.input, nested.input);
        assert_eq!(flat.input.row(1).to_vec(), vec![-3.0, 0.4f32]);
    }

    #[test]
    fn json_numbers_round_as_the_v1_predict_body_does() {
        let text = "0.1000000000000000055511151231257827";
        let got = decode(
            body(&format!("[{text}, 1e-46, 16777217, 3]")).as_bytes(),
            None,
            2,
            9,
        )
        .unwrap();
        let want = serde_json::from_str::<f64>(text).unwrap() as f32;
        assert_eq!(got.input[[0, 0]].to_bits(), want.to_bits());
        assert_eq!(got.input[[1, 0]], 16_777_216.0);
    }

    #[test]
    fn data_the_fast_parser_refuses_is_named_by_its_path() {
        let err = decode(body(r#"[0, 1, 2, "x"]"#).as_bytes(), None, 2, 10).unwrap_err();
        assert!(format!("{err:?}").contains("inputs[0].data[3]"), "{err:?}");
    }

    #[test]
    fn binary_inputs_come_after_the_json_in_little_endian() {
        let json = r#"{"inputs":[{"name":"input","datatype":"FP64","shape":[1,2],"parameters":{"binary_data_size":16}}]}"#;
        let mut bytes = json.as_bytes().to_vec();
        bytes.extend(0.1f64.to_le_bytes());
        bytes.extend((-2.0f64).to_le_bytes());
        let got = decode(&bytes, Some(json.len()), 2, 10).unwrap();
        assert_eq!(got.input.row(0).to_vec(), vec![0.1f64 as f32, -2.0]);
        let extra = [bytes.as_slice(), &[0]].concat();
        assert!(decode(&extra, Some(json.len()), 2, 10).is_err());
        assert!(decode(&bytes[..bytes.len() - 1], Some(json.len()), 2, 10).is_err());
    }
}
