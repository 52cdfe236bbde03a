//! Weights made elsewhere: a safetensors file read into a model of a given spec.
//!
//! The file must hold exactly the tensors of [`super::serialize::layout`] (the `state_dict`
//! of the equivalent PyTorch `nn.Sequential`): each present, of its shape, with finite values;
//! no other tensor. Every refusal is an [`NnError::Invalid`] or [`NnError::Shape`] whose field
//! is the tensor's name (or `__metadata__.<key>`, or empty for the file as a whole), so that a
//! client learns which tensor is wrong and how.
//!
//! - **dtype**: `F32` as it is; `F64` is rounded to the nearest `F32` (a value beyond `F32`'s
//!   range is refused), `F16` and `BF16` are widened exactly. Anything else (integers, 8-bit
//!   floats) is refused. `num_batches_tracked` is an `I64` scalar, as PyTorch writes it.
//! - **metadata**: optional. A file written by [`super::serialize::to_safetensors`]
//!   (`format` = `mlp-lab.model.v1`) gives the standardizer, labels and task, and its `spec`
//!   must describe the same network (layers, activations, head, batch norm; dropout and init
//!   are the target model's). Any other metadata (`{"format": "pt"}` from
//!   `safetensors.torch.save_file`) is ignored, and so is its absence
//!   (`safetensors.numpy.save_file` writes none): inputs are then used as given (no
//!   standardization) and outputs are named by index — classes `"0"`…`"k-1"` for a softmax
//!   head, `"0"`/`"1"` for a one-output sigmoid head, labels `"0"`…`"k-1"` for a multi-output
//!   sigmoid head, `y0`… for an identity head.
//! - **hostile headers**: the header length is checked against the body and against what a
//!   file for the spec can need, then the header against the spec and the body's length
//!   against the file the header describes ([`super::header`], which a reader of a body that
//!   arrives in pieces uses too); sizes are computed with checked arithmetic, and nothing is
//!   allocated before those checks, beyond the body itself.

use safetensors::tensor::{Dtype, Metadata};

use super::data::Task;
use super::error::{NnError, Result};
use super::head::Head;
use super::header::{
    check_body_length, header_length, no_prefix, read_header, whole_file, PREFIX_BYTES,
};
use super::model::{Model, ModelSpec};
use super::serialize::{layout, set_param, Source};

/// A model read from someone else's file, and where its labels came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The model, with `spec` the target's.
    pub model: Model,
    /// Whether the file carried mlp-lab metadata (standardizer, labels, task).
    pub with_metadata: bool,
}

/// Reads `bytes` as the weights of a network of `spec`.
///
/// # Errors
/// [`NnError::Invalid`] naming the tensor or metadata key, or [`NnError::Shape`] naming the
/// tensor with the expected and the given shape.
pub fn import_safetensors(spec: &ModelSpec, bytes: &[u8]) -> Result<Imported> {
    let Some(prefix) = bytes.first_chunk::<PREFIX_BYTES>() else {
        return Err(no_prefix(bytes.len()));
    };
    let n = header_length(spec, *prefix, Some(bytes.len() as u64))?;
    // `header_length` saw that `n` bytes follow the prefix, so this cannot fail.
    let n = usize::try_from(n).map_err(|_| whole_file("the header length overflows"))?;
    let data_start = PREFIX_BYTES + n;
    let header = read_header(spec, &bytes[PREFIX_BYTES..data_start])?;
    check_body_length(header.file_bytes, bytes.len() as u64)?;
    let mut model = Model::new(spec.clone(), 0)?;
    let with_metadata = header.own.is_some();
    match header.own {
        Some(own) => {
            model.standardizer = own.standardizer;
            model.labels = own.labels;
            model.task = Some(own.task);
        }
        None => default_labels(&mut model),
    }
    load_tensors(&mut model, &header.tensors, &bytes[data_start..])?;
    Ok(Imported {
        model,
        with_metadata,
    })
}

fn default_labels(model: &mut Model) {
    let k = model.spec.outputs();
    let numbered = |prefix: &str| (0..k).map(|i| format!("{prefix}{i}")).collect();
    let (task, labels) = match model.spec.output {
        Head::Softmax => (Task::Classification, numbered("")),
        Head::Sigmoid if k == 1 => (Task::Classification, vec!["0".into(), "1".into()]),
        Head::Sigmoid => (Task::MultiLabel, numbered("")),
        Head::Identity => (Task::Regression, numbered("y")),
    };
    model.task = Some(task);
    model.labels = labels;
}

/// Reads every tensor of `metadata` (checked by [`read_header`]: exactly the spec's, each
/// of its shape and of a dtype its slot reads) from `data`, the bytes after the header.
fn load_tensors(model: &mut Model, metadata: &Metadata, data: &[u8]) -> Result<()> {
    let (slots, _) = layout(&model.spec);
    for slot in &slots {
        let name = slot.name.as_str();
        let (dtype, bytes) = metadata
            .info(name)
            .and_then(|info| {
                let (start, end) = info.data_offsets;
                Some((info.dtype, data.get(start..end)?))
            })
            .ok_or_else(|| NnError::invalid(name, "tensor is missing"))?;
        match slot.source {
            Source::BatchesTracked(l) => {
                let batches = read_count(name, dtype, bytes)?;
                if let Some(s) = model.bn_stats[l].as_mut() {
                    s.batches = batches;
                }
            }
            Source::Param(i) => {
                let values = read_floats(name, dtype, bytes)?;
                set_param(&mut model.params[i], values);
            }
            Source::RunningMean(l) => {
                let values = read_floats(name, dtype, bytes)?;
                if let Some(s) = model.bn_stats[l].as_mut() {
                    s.mean = values;
                }
            }
            Source::RunningVar(l) => {
                let values = read_floats(name, dtype, bytes)?;
                if let Some(i) = values.iter().position(|&v| v < 0.0) {
                    return Err(NnError::invalid(
                        name,
                        format!(
                            "element {i} is {}: a variance cannot be negative",
                            values[i]
                        ),
                    ));
                }
                if let Some(s) = model.bn_stats[l].as_mut() {
                    s.var = values;
                }
            }
        }
    }
    Ok(())
}

/// The values of a float tensor as `f32`, converted from `F64`, `F16` or `BF16`; each must be
/// finite in `f32`.
fn read_floats(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    let values: Vec<f32> = match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                f64::from_le_bytes(a) as f32
            })
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect(),
        other => {
            return Err(NnError::invalid(
                name,
                format!(
                    "tensor `{name}` has dtype {other}; expected F32 (F64, F16 and BF16 are \
                     converted)"
                ),
            ))
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        // An F64 value is judged before it is narrowed: only a finite one can be "beyond
        // the range of F32"; ±inf and NaN are reported as what they are.
        let original = (dtype == Dtype::F64).then(|| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&data[i * 8..i * 8 + 8]);
            f64::from_le_bytes(a)
        });
        let why = match original {
            Some(v) if v.is_finite() => format!("is {v:e}, beyond the range of F32"),
            Some(v) => format!("is {v}, not a finite number"),
            None => format!("is {}, not a finite number", values[i]),
        };
        return Err(NnError::invalid(
            name,
            format!("tensor `{name}` element {i} {why}"),
        ));
    }
    Ok(values)
}

/// `num_batches_tracked`: an `I64` scalar, not negative.
fn read_count(name: &str, dtype: Dtype, data: &[u8]) -> Result<u64> {
    let bytes: Option<[u8; 8]> = data.try_into().ok();
    match (dtype, bytes) {
        (Dtype::I64, Some(b)) => u64::try_from(i64::from_le_bytes(b)).map_err(|_| {
            NnError::invalid(
                name,
                format!("tensor `{name}` is negative; it counts batches"),
            )
        }),
        (dtype, _) => Err(NnError::invalid(
            name,
            format!("tensor `{name}` has dtype {dtype}; expected an I64 scalar"),
        )),
    }
}

/// IEEE 754 half precision to single, exactly.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match (exp, man) {
        (0, 0) => f32::from_bits(sign),
        (0, _) => {
            // Subnormal: man × 2^-24, exact in f32.
            let v = man as f32 / 16_777_216.0;
            if sign == 0 {
                v
            } else {
                -v
            }
        }
        (0x1f, _) => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::activation::Activation;
    use crate::nn::data::Standardizer;
    use crate::nn::serialize::{to_safetensors, FORMAT};
    use std::collections::BTreeMap;

    fn spec() -> ModelSpec {
        let mut s = ModelSpec::new(&[3, 4, 2], Activation::Prelu { init: 0.2 }, Head::Softmax);
        s.batch_norm = true;
        s
    }

    /// One tensor of a test file: name, dtype, shape, bytes.
    type Tensor = (&'static str, &'static str, Vec<usize>, Vec<u8>);

    /// A safetensors file of `(name, dtype, shape, bytes)`, with `meta` if given; written by
    /// hand so that tests can make every kind of wrong file.
    fn file(
        tensors: &[(&str, &str, Vec<usize>, Vec<u8>)],
        meta: Option<&[(&str, &str)]>,
    ) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        if let Some(meta) = meta {
            let m: BTreeMap<&str, &str> = meta.iter().copied().collect();
            header.insert("__metadata__".into(), serde_json::json!(m));
        }
        let mut offset = 0;
        for (name, dtype, shape, bytes) in tensors {
            header.insert(
                (*name).into(),
                serde_json::json!({"dtype": dtype, "shape": shape,
                                   "data_offsets": [offset, offset + bytes.len()]}),
            );
            offset += bytes.len();
        }
        let text = serde_json::Value::Object(header).to_string();
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(text.as_bytes());
        for t in tensors {
            out.extend_from_slice(&t.3);
        }
        out
    }

    fn f32s(n: usize, v: f32) -> Vec<u8> {
        (0..n)
            .flat_map(|i| (v + i as f32 * 0.01).to_le_bytes())
            .collect()
    }

    /// The tensors of `spec()` as PyTorch would name them, all F32.
    fn torch_like() -> Vec<Tensor> {
        vec![
            ("0.weight", "F32", vec![4, 3], f32s(12, 0.1)),
            ("0.bias", "F32", vec![4], f32s(4, 0.0)),
            ("1.weight", "F32", vec![4], f32s(4, 1.0)),
            ("1.bias", "F32", vec![4], f32s(4, 0.0)),
            ("1.running_mean", "F32", vec![4], f32s(4, 0.5)),
            ("1.running_var", "F32", vec![4], f32s(4, 2.0)),
            (
                "1.num_batches_tracked",
                "I64",
                vec![],
                7i64.to_le_bytes().to_vec(),
            ),
            ("2.weight", "F32", vec![4], f32s(4, 0.25)),
            ("3.weight", "F32", vec![2, 4], f32s(8, -0.3)),
            ("3.bias", "F32", vec![2], f32s(2, 0.0)),
        ]
    }

    fn field_of(err: NnError) -> (String, String) {
        match err {
            NnError::Invalid { field, message } => (field, message),
            NnError::Shape {
                what,
                expected,
                got,
            } => (what, format!("{expected:?} {got:?}")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_torch_style_file_without_metadata_imports_with_default_labels() {
        let imported = import_safetensors(&spec(), &file(&torch_like(), None)).unwrap();
        let m = imported.model;
        assert!(!imported.with_metadata);
        assert_eq!(m.standardizer, None);
        assert_eq!(m.labels, ["0", "1"]);
        assert_eq!(m.task, Some(Task::Classification));
        // [out, in] in the file → [in, out] here: file element (o=1, i=2) is index 1*3+2.
        assert_eq!(m.params[0].view()[[2, 1]], 0.1 + 5.0 * 0.01);
        assert_eq!(m.bn_stats[0].as_ref().unwrap().batches, 7);
        // `{"format": "pt"}` (safetensors.torch.save_file) is someone else's metadata.
        let pt = import_safetensors(&spec(), &file(&torch_like(), Some(&[("format", "pt")])));
        assert_eq!(pt.unwrap().model, m);
    }

    #[test]
    fn our_own_file_imports_with_its_metadata_unchanged() {
        let mut m = Model::new(spec(), 3).unwrap();
        m.standardizer = Some(Standardizer {
            mean: vec![1.0, 2.0, 3.0],
            std: vec![0.5, 1.0, 2.0],
        });
        m.labels = vec!["cat".into(), "dog".into()];
        m.task = Some(Task::Classification);
        let imported = import_safetensors(&spec(), &to_safetensors(&m).unwrap()).unwrap();
        assert!(imported.with_metadata);
        assert_eq!(imported.model, m);

        let mut other = spec();
        other.layers[1] = 5;
        let (field, message) =
            field_of(import_safetensors(&other, &to_safetensors(&m).unwrap()).unwrap_err());
        assert_eq!(field, "__metadata__.spec");
        assert!(
            message.contains("[3, 5, 2]") && message.contains("[3, 4, 2]"),
            "{message}"
        );
    }

    #[test]
    fn f64_f16_and_bf16_are_converted() {
        let mut t = torch_like();
        t[0] = (
            "0.weight",
            "F64",
            vec![4, 3],
            (0..12)
                .flat_map(|i| (f64::from(i) * 0.5).to_le_bytes())
                .collect(),
        );
        // 1.5 as F16 is 0x3e00; as BF16 0x3fc0.
        t[2] = (
            "1.weight",
            "F16",
            vec![4],
            [0x3e00u16; 4]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        t[3] = (
            "1.bias",
            "BF16",
            vec![4],
            [0x3fc0u16; 4]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        let m = import_safetensors(&spec(), &file(&t, None)).unwrap().model;
        assert_eq!(m.params[0].view()[[1, 0]], 0.5);
        assert_eq!(m.params[2].data, [1.5; 4]);
        assert_eq!(m.params[3].data, [1.5; 4]);
        // Subnormal, infinity and negative halves.
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
    }

    #[test]
    fn each_wrong_tensor_is_named() {
        let cases: Vec<(Vec<Tensor>, &str, &str)> = vec![
            (torch_like()[1..].to_vec(), "0.weight", "missing"),
            (
                [
                    torch_like(),
                    vec![("4.weight", "F32", vec![1], f32s(1, 0.0))],
                ]
                .concat(),
                "4.weight",
                "unexpected",
            ),
            (
                {
                    let mut t = torch_like();
                    t[0] = ("0.weight", "F32", vec![3, 4], f32s(12, 0.1));
                    t
                },
                "0.weight",
                "[4, 3] [3, 4]",
            ),
            (
                {
                    let mut t = torch_like();
                    t[1] = ("0.bias", "I32", vec![4], vec![0; 16]);
                    t
                },
                "0.bias",
                "dtype I32",
            ),
            (
                {
                    let mut t = torch_like();
                    t[1] = (
                        "0.bias",
                        "F32",
                        vec![4],
                        [0.0, f32::NAN, 0.0, 0.0]
                            .iter()
                            .flat_map(|v: &f32| v.to_le_bytes())
                            .collect(),
                    );
                    t
                },
                "0.bias",
                "element 1 is NaN",
            ),
            (
                {
                    let mut t = torch_like();
                    t[1] = (
                        "0.bias",
                        "F64",
                        vec![4],
                        [0.0, 0.0, 1e300, 0.0]
                            .iter()
                            .flat_map(|v: &f64| v.to_le_bytes())
                            .collect(),
                    );
                    t
                },
                "0.bias",
                "beyond the range of F32",
            ),
            (
                {
                    let mut t = torch_like();
                    t[1] = (
                        "0.bias",
                        "F64",
                        vec![4],
                        [0.0, f64::NEG_INFINITY, 0.0, 0.0]
                            .iter()
                            .flat_map(|v: &f64| v.to_le_bytes())
                            .collect(),
                    );
                    t
                },
                "0.bias",
                "element 1 is -inf, not a finite number",
            ),
            (
                {
                    let mut t = torch_like();
                    t[1] = (
                        "0.bias",
                        "F64",
                        vec![4],
                        [0.0, 0.0, f64::INFINITY, 0.0]
                            .iter()
                            .flat_map(|v: &f64| v.to_le_bytes())
                            .collect(),
                    );
                    t
                },
                "0.bias",
                "element 2 is inf, not a finite number",
            ),
            (
                {
                    let mut t = torch_like();
                    t[5] = ("1.running_var", "F32", vec![4], f32s(4, -1.0));
                    t
                },
                "1.running_var",
                "negative",
            ),
        ];
        for (tensors, name, says) in cases {
            let (field, message) =
                field_of(import_safetensors(&spec(), &file(&tensors, None)).unwrap_err());
            assert_eq!(field, name, "{message}");
            assert!(message.contains(says), "{name}: {message}");
        }
    }

    #[test]
    fn damaged_and_hostile_files_are_refused_without_panicking() {
        let good = file(&torch_like(), None);
        let mut absurd = good.clone();
        absurd[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut huge_shape = torch_like();
        huge_shape[0] = ("0.weight", "F32", vec![usize::MAX / 2, 3], f32s(12, 0.1));
        let mut overlapping = good.clone();
        let at = overlapping
            .windows(22)
            .position(|w| w == b"\"data_offsets\":[48,64]")
            .expect("0.bias offsets");
        overlapping[at..at + 22].copy_from_slice(b"\"data_offsets\":[40,56]");
        // A header far longer than any file for this spec needs (here 2 MiB of JSON array):
        // refused before it is parsed.
        let long = 2usize << 20;
        let mut bloated = (long as u64).to_le_bytes().to_vec();
        bloated.extend_from_slice(b"{\"a\":[");
        bloated.resize(8 + long - 2, b'0');
        bloated.extend_from_slice(b"]}");
        for (bytes, says) in [
            (bloated, "more than the"),
            (good[..good.len() - 3].to_vec(), "truncated"),
            (good[..5].to_vec(), "8-byte header length"),
            (absurd, "header length says"),
            (
                b"PK\x03\x04 this is a zip file, not safetensors".to_vec(),
                "not a safetensors file",
            ),
            (file(&huge_shape, None), "too large"),
            (overlapping, "data_offsets"),
        ] {
            let (_, message) = field_of(import_safetensors(&spec(), &bytes).unwrap_err());
            assert!(message.contains(says), "{says}: {message}");
        }
    }

    #[test]
    fn bad_metadata_is_named_by_its_key() {
        let spec_json = serde_json::to_string(&spec()).expect("a spec");
        // Good mlp-lab metadata for spec() (2 classes), with `change` applied (an empty value
        // leaves the key out).
        let meta = |change: (&'static str, &'static str)| {
            let mut keys: Vec<(&str, &str)> = vec![
                ("format", FORMAT),
                ("spec", spec_json.as_str()),
                ("labels", "[\"a\",\"b\"]"),
                ("task", "\"classification\""),
            ];
            keys.retain(|(k, _)| *k != change.0);
            if !change.1.is_empty() {
                keys.push(change);
            }
            file(&torch_like(), Some(&keys))
        };
        assert!(import_safetensors(&spec(), &meta(("standardizer", "null"))).is_ok());
        for (bytes, key, says) in [
            (
                meta(("format", "mlp-lab.model.v9")),
                "__metadata__.format",
                "unknown format",
            ),
            (
                meta(("standardizer", "{\"mean\":[0,0,0],\"std\":[1,0,1]}")),
                "__metadata__.standardizer",
                "",
            ),
            (
                meta(("labels", "[\"a\",\"b\",\"c\"]")),
                "__metadata__.labels",
                "classes",
            ),
            (meta(("spec", "")), "__metadata__.spec", "missing"),
            (meta(("labels", "")), "__metadata__.labels", "missing"),
            (meta(("task", "")), "__metadata__.task", "missing"),
            (meta(("task", "null")), "__metadata__.task", ""),
        ] {
            let (field, message) = field_of(import_safetensors(&spec(), &bytes).unwrap_err());
            assert_eq!(field, key, "{message}");
            assert!(message.contains(says), "{key}: {message}");
        }
    }
}
