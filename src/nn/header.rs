//! The header of a weights file for a given spec, judged before the tensors' bytes are read.
//!
//! A safetensors file is an 8-byte little-endian header length, a JSON header, then the
//! tensors' bytes. The header names every tensor with its dtype, shape and place in the data,
//! so once it is in, the exact size of the whole file is known. A reader of a body that
//! arrives in pieces can therefore refuse garbage after its first 8 bytes
//! ([`header_length`]), a file that does not fit the spec once its header is in
//! ([`read_header`]), and a body longer than the file its header describes without keeping a
//! byte beyond it ([`check_body_length`]). [`super::import`] judges a whole file with the
//! same functions, so a file gets the same answer whether it arrived at once or in pieces.
//!
//! Every refusal is an [`NnError::Invalid`] (or [`NnError::Shape`]) whose field is the tensor's
//! name, or empty for the file as a whole.

use std::collections::HashMap;
use std::fmt;

use safetensors::tensor::{Dtype, Metadata, SafeTensorError, TensorInfo};
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;

use super::activation::Activation;
use super::data::{Standardizer, Task};
use super::error::{NnError, Result};
use super::model::ModelSpec;
use super::serialize::{layout, Source, TensorSlot, FORMAT};

/// The bytes before the JSON header: its length, a little-endian `u64`.
pub const PREFIX_BYTES: usize = 8;

/// What the header of a file says once it has been checked against a spec.
#[derive(Clone, Debug)]
pub struct Header {
    /// The tensors' dtypes, shapes and offsets in the data.
    pub tensors: Metadata,
    /// mlp-lab's metadata, when the file carries it (`format` = [`FORMAT`]).
    pub own: Option<OwnMetadata>,
    /// The size of the whole file: prefix, header and data.
    pub file_bytes: u64,
}

/// What mlp-lab's metadata gives a model beyond its tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnMetadata {
    /// The inputs' statistics, when the model standardizes them.
    pub standardizer: Option<Standardizer>,
    /// The names of the outputs or classes; they fit the head.
    pub labels: Vec<String>,
    /// What the model was trained for.
    pub task: Task,
}

/// The longest JSON header a file for `spec` can need: a few hundred bytes per tensor entry,
/// the spec, and per input (standardizer mean and std) and per output (labels) some dozens of
/// bytes — 1 MiB plus 512 bytes per input and output and per tensor is far more than that.
/// The bound matters: parsing a JSON header takes many times its size in memory, so without
/// it a 100 MB header of `[0,0,0,…]` would cost gigabytes before any check could refuse it.
#[must_use]
pub fn max_header_bytes(spec: &ModelSpec) -> u64 {
    let (slots, _) = layout(spec);
    let items = spec.inputs() as u64 + spec.outputs() as u64 + slots.len() as u64;
    (1 << 20) + 512 * items
}

/// The length of the JSON header, read from the file's first [`PREFIX_BYTES`]; refused when
/// it is more than a file for `spec` can need, or else more than follows it in a body of
/// `body_bytes` (when the body's size is known).
///
/// # Errors
/// [`NnError::Invalid`] for the file as a whole, saying the length and the bound.
pub fn header_length(
    spec: &ModelSpec,
    prefix: [u8; PREFIX_BYTES],
    body_bytes: Option<u64>,
) -> Result<u64> {
    let n = u64::from_le_bytes(prefix);
    let max = max_header_bytes(spec);
    if n > max {
        return Err(whole_file(format!(
            "not a safetensors file for this model: the header length says {n} bytes (the \
             file's first 8 bytes, little-endian), more than the {max} a file for this model's \
             spec can need"
        )));
    }
    if let Some(rest) = body_bytes.map(|b| b.saturating_sub(PREFIX_BYTES as u64)) {
        if n > rest {
            return Err(header_cut_short(n, rest));
        }
    }
    Ok(n)
}

/// Reads the JSON `header` of a file for `spec` and checks it: offsets contiguous and covering
/// the data (the `safetensors` crate's rules, sizes computed with checked arithmetic), then
/// mlp-lab's metadata if the file carries it (its spec must describe the same network, its
/// labels fit the head), then exactly the spec's tensors, each of its shape and of a dtype
/// that can be read.
///
/// # Errors
/// [`NnError::Invalid`] naming the tensor (or the file as a whole), [`NnError::Shape`] naming
/// the tensor with both shapes.
pub fn read_header(spec: &ModelSpec, header: &[u8]) -> Result<Header> {
    let text =
        std::str::from_utf8(header).map_err(|e| header_error(SafeTensorError::InvalidHeader(e)))?;
    let raw: RawHeader = serde_json::from_str(text)
        .map_err(|e| header_error(SafeTensorError::InvalidHeaderDeserialization(e)))?;
    let mut tensors = raw.tensors;
    tensors.sort_by_key(|(_, info)| info.data_offsets);
    let metadata = Metadata::new(raw.metadata, tensors).map_err(header_error)?;
    let own = match metadata.metadata() {
        Some(meta) => read_own_metadata(spec, meta)?,
        None => None,
    };
    check_tensors(&layout(spec).0, &metadata)?;
    let file_bytes = (PREFIX_BYTES as u64)
        .checked_add(header.len() as u64)
        .and_then(|n| n.checked_add(metadata.data_len() as u64))
        .ok_or_else(|| whole_file("a tensor's offsets are too large: the file size overflows"))?;
    Ok(Header {
        tensors: metadata,
        own,
        file_bytes,
    })
}

/// The header as the `safetensors` crate reads it, so that its validation (whose errors name
/// the tensor) can be had without the data.
///
/// Read by hand rather than as the crate's `#[serde(flatten)]` map: a flattened map is first
/// read whole into serde's generic values, some 16 bytes for each `0,` of a hostile
/// `{"x": [0,0,0,…]}`. Here each value is read at once as what it must be, so such a header
/// fails at its first wrong token and a header that parses costs a few times its size.
struct RawHeader {
    metadata: Option<HashMap<String, String>>,
    tensors: Vec<(String, TensorInfo)>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = RawHeader;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of tensor names to their dtype, shape and data_offsets")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawHeader, A::Error> {
                let mut header = RawHeader {
                    metadata: None,
                    tensors: Vec::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "__metadata__" {
                        if header.metadata.is_some() {
                            return Err(A::Error::custom("`__metadata__` appears twice"));
                        }
                        header.metadata = map.next_value()?;
                    } else {
                        let info = map.next_value::<TensorInfo>()?;
                        header.tensors.push((key, info));
                    }
                }
                let mut names: Vec<&str> = header.tensors.iter().map(|(n, _)| n.as_str()).collect();
                names.sort_unstable();
                if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
                    return Err(A::Error::custom(format!(
                        "tensor `{}` appears twice",
                        twice[0]
                    )));
                }
                Ok(header)
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// Refuses a body of `body_bytes` for a file of `file_bytes` (as its header describes it)
/// unless they are equal: shorter is a truncated file, longer has trailing bytes.
///
/// # Errors
/// [`NnError::Invalid`] for the file as a whole.
pub fn check_body_length(file_bytes: u64, body_bytes: u64) -> Result<()> {
    use std::cmp::Ordering;
    match body_bytes.cmp(&file_bytes) {
        Ordering::Equal => Ok(()),
        Ordering::Less => Err(whole_file(format!(
            "the body has {body_bytes} bytes, fewer than the {file_bytes} of the file its header \
             describes: the file is truncated"
        ))),
        Ordering::Greater => Err(longer_than(file_bytes)),
    }
}

/// The refusal of a body that goes on past the `file_bytes` of the file its header
/// describes, for a reader that stops at the first byte too many.
#[must_use]
pub fn longer_than(file_bytes: u64) -> NnError {
    whole_file(format!(
        "the body is longer than the {file_bytes} bytes of the file its header describes: \
         trailing bytes after the tensors' data"
    ))
}

/// The refusal of a body that ends within the first [`PREFIX_BYTES`], after `body_bytes`.
#[must_use]
pub fn no_prefix(body_bytes: usize) -> NnError {
    whole_file(format!(
        "not a safetensors file: {body_bytes} bytes, but a file starts with an 8-byte header \
         length"
    ))
}

/// The refusal of a body in which fewer than the `n` bytes of the header follow the prefix
/// (`rest`).
#[must_use]
pub fn header_cut_short(n: u64, rest: u64) -> NnError {
    whole_file(format!(
        "not a safetensors file: the header length says {n} bytes, but only {rest} follow it"
    ))
}

/// An error about the file as a whole (no tensor or key to name).
pub(crate) fn whole_file(message: impl Into<String>) -> NnError {
    NnError::invalid("", message)
}

/// mlp-lab's metadata read and checked against `spec`; `None` when the metadata is someone
/// else's.
fn read_own_metadata(
    spec: &ModelSpec,
    meta: &HashMap<String, String>,
) -> Result<Option<OwnMetadata>> {
    match meta.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) if other.starts_with("mlp-lab.") => {
            return Err(NnError::invalid(
                "__metadata__.format",
                format!("unknown format version `{other}`; this build reads `{FORMAT}`"),
            ))
        }
        _ => return Ok(None),
    }
    let parse = |key: &str| -> Result<Option<serde_json::Value>> {
        meta.get(key)
            .map(|text| {
                serde_json::from_str(text).map_err(|e| {
                    NnError::invalid(format!("__metadata__.{key}"), format!("not JSON: {e}"))
                })
            })
            .transpose()
    };
    let typed = |key: &str, value: serde_json::Value| {
        let field = format!("__metadata__.{key}");
        move |e: serde_json::Error| NnError::invalid(field, format!("{e} in {value}"))
    };
    // What mlp-lab writes always has these three; without them the file is not what its
    // format says, and guessing would answer predictions without labels.
    let required = |key: &str| -> Result<serde_json::Value> {
        parse(key)?.ok_or_else(|| {
            NnError::invalid(
                format!("__metadata__.{key}"),
                format!("missing: a file of format `{FORMAT}` carries spec, labels and task"),
            )
        })
    };
    let v = required("spec")?;
    let theirs: ModelSpec = serde_json::from_value(v.clone()).map_err(typed("spec", v))?;
    check_same_network(spec, &theirs)?;
    let standardizer = match parse("standardizer")? {
        Some(v) => serde_json::from_value::<Option<Standardizer>>(v.clone())
            .map_err(typed("standardizer", v))?,
        None => None,
    };
    if let Some(s) = &standardizer {
        check_standardizer(spec, s)?;
    }
    let v = required("labels")?;
    let labels: Vec<String> = serde_json::from_value(v.clone()).map_err(typed("labels", v))?;
    let v = required("task")?;
    let task: Task = serde_json::from_value(v.clone()).map_err(typed("task", v))?;
    spec.output
        .check_task(spec.outputs(), task, labels.len())
        .map_err(|m| NnError::invalid("__metadata__.labels", m))?;
    Ok(Some(OwnMetadata {
        standardizer,
        labels,
        task,
    }))
}

/// Whether two specs compute the same function from the same tensors (PReLU's initial slope,
/// dropout and init only matter to training).
fn check_same_network(ours: &ModelSpec, theirs: &ModelSpec) -> Result<()> {
    let same_act = |a: &Activation, b: &Activation| match (a, b) {
        (Activation::Prelu { .. }, Activation::Prelu { .. }) => true,
        _ => a == b,
    };
    let same = ours.layers == theirs.layers
        && ours.output == theirs.output
        && ours.batch_norm == theirs.batch_norm
        && ours.activations.len() == theirs.activations.len()
        && ours
            .activations
            .iter()
            .zip(&theirs.activations)
            .all(|(a, b)| same_act(a, b));
    if same {
        return Ok(());
    }
    let describe = |s: &ModelSpec| {
        let acts: Vec<String> = s
            .activations
            .iter()
            .map(|a| serde_json::to_string(a).unwrap_or_else(|_| a.name().to_owned()))
            .collect();
        format!(
            "layers {:?}, activations [{}], output {}, batch_norm {}",
            s.layers,
            acts.join(", "),
            serde_json::to_string(&s.output).unwrap_or_default(),
            s.batch_norm
        )
    };
    Err(NnError::invalid(
        "__metadata__.spec",
        format!(
            "the file was written for a different network: expected {}, given {}",
            describe(ours),
            describe(theirs)
        ),
    ))
}

fn check_standardizer(spec: &ModelSpec, s: &Standardizer) -> Result<()> {
    let n = spec.inputs();
    if s.mean.len() != n || s.std.len() != n {
        return Err(NnError::invalid(
            "__metadata__.standardizer",
            format!(
                "{} means and {} stds for a model of {n} inputs",
                s.mean.len(),
                s.std.len()
            ),
        ));
    }
    if !s.mean.iter().chain(&s.std).all(|v| v.is_finite()) || s.std.iter().any(|&v| v <= 0.0) {
        return Err(NnError::invalid(
            "__metadata__.standardizer",
            "values must be finite and every std > 0",
        ));
    }
    Ok(())
}

fn header_error(error: SafeTensorError) -> NnError {
    match error {
        SafeTensorError::InvalidOffset(name) => NnError::invalid(
            name.clone(),
            format!(
                "tensor `{name}`: its data_offsets overlap another tensor's, leave a gap or lie \
                 outside the data"
            ),
        ),
        SafeTensorError::ValidationOverflow => {
            whole_file("a tensor's shape is too large: its byte size overflows")
        }
        SafeTensorError::TensorInvalidInfo => whole_file(
            "a tensor's data_offsets do not span shape × dtype size bytes; the file is damaged",
        ),
        other => whole_file(format!("not a safetensors file: {other}")),
    }
}

/// Exactly the tensors of `slots`, each of its shape and of a dtype its slot can read: `F32`,
/// `F64`, `F16` or `BF16` for values, `I64` for a batch count. An unexpected tensor is named
/// first, then a missing one, then the first in the spec's order that does not fit.
fn check_tensors(slots: &[TensorSlot], metadata: &Metadata) -> Result<()> {
    let expected: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
    let mut given = metadata.offset_keys();
    given.sort();
    if let Some(extra) = given.iter().find(|n| !expected.contains(&n.as_str())) {
        return Err(NnError::invalid(
            extra.clone(),
            format!(
                "unexpected tensor `{extra}`; a model of this spec has exactly: {}",
                expected.join(", ")
            ),
        ));
    }
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| metadata.info(n).is_none())
        .collect();
    if let Some(first) = missing.first() {
        return Err(NnError::invalid(
            *first,
            format!(
                "tensor `{first}` is missing (missing: {})",
                missing.join(", ")
            ),
        ));
    }
    for slot in slots {
        let name = slot.name.as_str();
        let info = metadata
            .info(name)
            .ok_or_else(|| NnError::invalid(name, "tensor is missing"))?;
        if info.shape != slot.shape {
            return Err(NnError::Shape {
                what: slot.name.clone(),
                expected: slot.shape.clone(),
                got: info.shape.clone(),
            });
        }
        check_dtype(name, slot.source, info.dtype)?;
    }
    Ok(())
}

fn check_dtype(name: &str, source: Source, dtype: Dtype) -> Result<()> {
    match (source, dtype) {
        (Source::BatchesTracked(_), Dtype::I64)
        | (
            Source::Param(_) | Source::RunningMean(_) | Source::RunningVar(_),
            Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16,
        ) => Ok(()),
        (Source::BatchesTracked(_), other) => Err(NnError::invalid(
            name,
            format!("tensor `{name}` has dtype {other}; expected an I64 scalar"),
        )),
        (_, other) => Err(NnError::invalid(
            name,
            format!(
                "tensor `{name}` has dtype {other}; expected F32 (F64, F16 and BF16 are \
                 converted)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::head::Head;
    use crate::nn::model::Model;
    use crate::nn::serialize::to_safetensors;

    fn spec() -> ModelSpec {
        ModelSpec::new(&[2, 32, 2], Activation::Relu, Head::Softmax)
    }

    fn prefix_of(file: &[u8]) -> [u8; PREFIX_BYTES] {
        *file.first_chunk().expect("a prefix")
    }

    #[test]
    fn the_header_of_a_file_gives_its_exact_size() {
        let mut model = Model::new(spec(), 1).unwrap();
        model.labels = vec!["no".into(), "yes".into()];
        model.task = Some(Task::Classification);
        let file = to_safetensors(&model).unwrap();

        let n = header_length(&spec(), prefix_of(&file), None).unwrap();
        let header = read_header(&spec(), &file[PREFIX_BYTES..PREFIX_BYTES + n as usize]).unwrap();

        assert_eq!(header.file_bytes, file.len() as u64);
        assert!(header.own.is_some());
        assert!(check_body_length(header.file_bytes, file.len() as u64).is_ok());
    }

    #[test]
    fn a_header_length_beyond_what_the_spec_can_need_is_refused_from_the_prefix_alone() {
        let max = max_header_bytes(&spec());
        assert!(header_length(&spec(), max.to_le_bytes(), None).is_ok());

        let err = header_length(&spec(), (max + 1).to_le_bytes(), None).unwrap_err();
        let short = header_length(&spec(), 100u64.to_le_bytes(), Some(50)).unwrap_err();

        assert!(
            err.to_string().contains(&format!("more than the {max}")),
            "{err}"
        );
        assert!(short.to_string().contains("only 42 follow it"), "{short}");
    }

    #[test]
    fn a_body_of_another_length_than_its_file_is_truncated_or_has_trailing_bytes() {
        let short = check_body_length(100, 99).unwrap_err().to_string();
        let long = check_body_length(100, 101).unwrap_err().to_string();

        assert!(short.contains("truncated"), "{short}");
        assert!(long.contains("trailing bytes"), "{long}");
    }

    #[test]
    fn a_header_that_does_not_fit_the_spec_is_refused_before_any_data() {
        let header = br#"{"0.weight":{"dtype":"F32","shape":[2,32],"data_offsets":[0,256]}}"#;

        let err = read_header(&spec(), header).unwrap_err();

        assert!(
            matches!(&err, NnError::Invalid { field, .. } if field == "0.bias"),
            "{err}"
        );
    }

    #[test]
    fn a_header_of_the_wrong_shape_or_with_a_tensor_twice_is_not_safetensors() {
        let zeros = format!(r#"{{"0.weight":[{}0]}}"#, "0,".repeat(100_000));
        let entry = r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;
        let twice = format!(r#"{{"0.bias":{entry},"0.bias":{entry}}}"#);

        for (header, says) in [(zeros.as_str(), "invalid JSON"), (&twice, "appears twice")] {
            let err = read_header(&spec(), header.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("not a safetensors file") && err.contains(says),
                "{err}"
            );
        }
    }
}
