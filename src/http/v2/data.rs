//! The values of a tensor: JSON `data` (flat or nested, row-major) or raw little-endian bytes,
//! as the `f32`s `/v1/.../predict` would make of the same numbers.

use std::fmt;

use row_json::parse_numbers;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::http::error::ApiError;
use crate::http::error::V2Error;
use crate::http::extract::from_json_slice;

/// Raw little-endian FP32 (`element` 4) or FP64 (8) values as `f32`s.
pub(super) fn little_endian(bytes: &[u8], element: usize) -> Vec<f32> {
    if element == 4 {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    }
}

/// The numbers of an input's `data`: by the fast parser of `/v1` predict bodies when it can,
/// else by serde, whose errors say what is wrong.
pub(super) fn tensor_data(raw: &RawValue) -> Result<Vec<f32>, V2Error> {
    let bytes = raw.get().as_bytes();
    if let Some(values) = parse_numbers(bytes) {
        return Ok(values);
    }
    match from_json_slice::<TensorData>(bytes) {
        Ok(TensorData(values)) => Ok(values),
        Err(ApiError::Validation { errors }) => {
            let (field, message) = errors
                .into_iter()
                .next()
                .map(|e| (e.field, e.message))
                .unwrap_or_default();
            Err(V2Error::bad_request(format!(
                "`inputs[0].data{field}` is invalid: {message}"
            )))
        }
        Err(other) => Err(other.into()),
    }
}

/// The numbers of `data`, flat or nested to any depth, in row-major order, as `f32`s rounded
/// from their correctly rounded `f64` (as `/v1` reads them).
#[derive(Debug)]
struct TensorData(Vec<f32>);

impl<'de> Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut values = Vec::new();
        deserializer.deserialize_seq(Flatten(&mut values))?;
        Ok(TensorData(values))
    }
}

struct Flatten<'a>(&'a mut Vec<f32>);

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers, in a flat or nested array")
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.0.push(v as f32);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.push(v as f64 as f32);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push(v as f64 as f32);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_and_the_general_parser_of_data_agree() {
        let text =
            "[[0.1, -2e-3, 0], [123456789.123456789, 5e-46, -0.0], [1.17549435e-38, 7, 1E2]]";
        let fast = parse_numbers(text.as_bytes()).unwrap();
        let general: TensorData = serde_json::from_str(text).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&general.0));
    }
}
