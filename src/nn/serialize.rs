//! Model files: the tensors as safetensors, everything else as JSON in its metadata.
//!
//! The tensors are laid out as the `state_dict` of the equivalent PyTorch `nn.Sequential`, so
//! `model.load_state_dict(safetensors.torch.load_file(path))` works on it. For each hidden
//! layer the Sequential holds, in order: `Linear(in, out)`, then `BatchNorm1d(out)` if batch
//! norm is on, then the activation module (`PReLU(out)` carries its slopes), then `Dropout(p)`
//! if dropout is on; the output `Linear` comes last and yields logits (apply softmax or sigmoid
//! to get what `predict` returns). Tensor names are `"{index}.weight"`, `"{index}.bias"`, and
//! for batch norm also `running_mean`, `running_var` and `num_batches_tracked` (I64), with
//! PyTorch's `[out, in]` layout for weights. The metadata holds `format`
//! (`mlp-lab.model.v1`), `spec`, `labels`, `task`, `standardizer` (mean and std of each input;
//! standardize inputs with them first) and `sequential` (the modules, as Python).
//!
//! Reading checks everything: the format version, every tensor's presence, dtype, shape and
//! finiteness, and that no unexpected tensor is present; a mismatch names the tensor and both
//! shapes. Writing then reading gives back the same model, bit for bit.

use std::collections::BTreeMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::activation::Activation;
use super::data::{Standardizer, Task};
use super::error::{NnError, Result};
use super::model::{Model, ModelSpec, ParamKind};

/// The `format` metadata value this version writes and reads.
pub const FORMAT: &str = "mlp-lab.model.v1";

/// Where one model tensor sits in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSlot {
    /// File name of the tensor (`"0.weight"`).
    pub name: String,
    /// Shape in the file.
    pub shape: Vec<usize>,
    /// What it holds.
    pub source: Source,
}

/// The model data behind a [`TensorSlot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `params[i]`, transposed when it is a weight matrix.
    Param(usize),
    /// Batch norm running mean of hidden layer `l`.
    RunningMean(usize),
    /// Batch norm running variance of hidden layer `l`.
    RunningVar(usize),
    /// Batch norm batch count of hidden layer `l` (I64 scalar).
    BatchesTracked(usize),
}

/// The tensors of a model of `spec`, in `nn.Sequential` order, and the Python text of the
/// Sequential.
pub fn layout(spec: &ModelSpec) -> (Vec<TensorSlot>, Vec<String>) {
    let mut slots = Vec::new();
    let mut modules = Vec::new();
    let lps = super::model::layer_params(spec);
    for (l, lp) in lps.iter().enumerate() {
        let (fan_in, fan_out) = (spec.layers[l], spec.layers[l + 1]);
        let mut push = |suffix: &str, shape: Vec<usize>, source: Source, idx: usize| {
            slots.push(TensorSlot {
                name: format!("{idx}.{suffix}"),
                shape,
                source,
            })
        };
        let idx = modules.len();
        modules.push(format!("nn.Linear({fan_in}, {fan_out})"));
        push(
            "weight",
            vec![fan_out, fan_in],
            Source::Param(lp.weight),
            idx,
        );
        push("bias", vec![fan_out], Source::Param(lp.bias), idx);
        if l == spec.hidden() {
            break;
        }
        if let Some((g, b)) = lp.bn {
            let idx = modules.len();
            modules.push(format!("nn.BatchNorm1d({fan_out})"));
            push("weight", vec![fan_out], Source::Param(g), idx);
            push("bias", vec![fan_out], Source::Param(b), idx);
            push("running_mean", vec![fan_out], Source::RunningMean(l), idx);
            push("running_var", vec![fan_out], Source::RunningVar(l), idx);
            push(
                "num_batches_tracked",
                vec![],
                Source::BatchesTracked(l),
                idx,
            );
        }
        let idx = modules.len();
        modules.push(torch_module(&spec.activations[l], fan_out));
        if let Some(p) = lp.prelu {
            push("weight", vec![fan_out], Source::Param(p), idx);
        }
        if spec.dropout > 0.0 {
            modules.push(format!("nn.Dropout({})", spec.dropout));
        }
    }
    (slots, modules)
}

fn torch_module(act: &Activation, units: usize) -> String {
    match act {
        Activation::Identity => "nn.Identity()".into(),
        Activation::Sigmoid => "nn.Sigmoid()".into(),
        Activation::Tanh => "nn.Tanh()".into(),
        Activation::Relu => "nn.ReLU()".into(),
        Activation::LeakyRelu { alpha } => format!("nn.LeakyReLU({alpha})"),
        Activation::Prelu { .. } => format!("nn.PReLU({units})"),
        Activation::Elu { alpha } => format!("nn.ELU({alpha})"),
        Activation::Selu => "nn.SELU()".into(),
        Activation::Gelu => "nn.GELU()".into(),
        Activation::Silu => "nn.SiLU()".into(),
        Activation::Softplus => "nn.Softplus()".into(),
    }
}

/// Writes `model` as a safetensors file.
pub fn to_safetensors(model: &Model) -> Result<Vec<u8>> {
    let (slots, modules) = layout(&model.spec);
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(slots.len());
    for slot in slots {
        let (dtype, bytes) = match slot.source {
            Source::Param(i) => {
                let p = &model.params[i];
                let values: Vec<f32> = if p.kind == ParamKind::Weight {
                    p.view().t().iter().copied().collect()
                } else {
                    p.data.to_vec()
                };
                (Dtype::F32, f32_bytes(&values))
            }
            Source::RunningMean(l) => (Dtype::F32, f32_bytes(&bn(model, l)?.mean)),
            Source::RunningVar(l) => (Dtype::F32, f32_bytes(&bn(model, l)?.var)),
            Source::BatchesTracked(l) => (
                Dtype::I64,
                (bn(model, l)?.batches as i64).to_le_bytes().to_vec(),
            ),
        };
        buffers.push((slot.name, dtype, slot.shape, bytes));
    }
    let mut meta = BTreeMap::new();
    meta.insert("format", FORMAT.to_string());
    meta.insert("spec", json(&model.spec)?);
    meta.insert("labels", json(&model.labels)?);
    meta.insert("task", json(&model.task)?);
    meta.insert("standardizer", json(&model.standardizer)?);
    meta.insert(
        "sequential",
        format!("nn.Sequential({})", modules.join(", ")),
    );
    Ok(write_safetensors(&buffers, &meta))
}

/// The safetensors encoding, written here rather than by the `safetensors` crate so that the
/// same model always gives the same bytes: the crate takes the metadata as a `HashMap`, whose
/// order changes from run to run. Layout: header length (u64 LE), the JSON header (keys
/// sorted, padded with spaces to a multiple of 8 bytes), then the tensors' bytes in order.
fn write_safetensors(
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    meta: &BTreeMap<&str, String>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut offset = 0usize;
    for (name, dtype, shape, bytes) in tensors {
        let dtype = match dtype {
            Dtype::I64 => "I64",
            _ => "F32",
        };
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let mut text = serde_json::Value::Object(header).to_string().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + offset);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    for (_, _, _, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    out
}

/// Reads a model file written by [`to_safetensors`].
pub fn from_safetensors(bytes: &[u8]) -> Result<Model> {
    read_model(bytes, None)
}

/// As [`from_safetensors`], for a file that must hold a network of `spec`: the spec in its
/// metadata is compared before anything is built from it, so a file edited to describe a
/// huge network is refused without allocating it.
///
/// # Errors
/// As [`from_safetensors`], and [`NnError::Format`] when the file's spec is not `spec`.
pub fn from_safetensors_of(bytes: &[u8], spec: &ModelSpec) -> Result<Model> {
    read_model(bytes, Some(spec))
}

fn read_model(bytes: &[u8], expected: Option<&ModelSpec>) -> Result<Model> {
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| NnError::Format(format!("header: {e}")))?;
    let meta = header
        .metadata()
        .as_ref()
        .ok_or_else(|| NnError::Format("no metadata: not an mlp-lab model file".into()))?;
    let get = |key: &str| {
        meta.get(key)
            .ok_or_else(|| NnError::Format(format!("metadata has no `{key}`")))
    };
    let format = get("format")?;
    if format != FORMAT {
        return Err(NnError::Format(format!(
            "unknown format version `{format}`; this build reads `{FORMAT}`"
        )));
    }
    let parse_err =
        |key: &str, e: serde_json::Error| NnError::Format(format!("metadata `{key}`: {e}"));
    let spec: ModelSpec = serde_json::from_str(get("spec")?).map_err(|e| parse_err("spec", e))?;
    if expected.is_some_and(|expected| *expected != spec) {
        return Err(NnError::Format(
            "the weights are of another architecture than the model's spec".into(),
        ));
    }
    let mut model = Model::new(spec, 0).map_err(|e| NnError::Format(format!("spec: {e}")))?;
    model.labels = serde_json::from_str(get("labels")?).map_err(|e| parse_err("labels", e))?;
    model.task =
        serde_json::from_str::<Option<Task>>(get("task")?).map_err(|e| parse_err("task", e))?;
    model.standardizer = serde_json::from_str::<Option<Standardizer>>(get("standardizer")?)
        .map_err(|e| parse_err("standardizer", e))?;
    if let Some(s) = &model.standardizer {
        let n = model.spec.inputs();
        if s.mean.len() != n || s.std.len() != n {
            return Err(NnError::Format(format!(
                "standardizer has {} means and {} stds for {n} inputs",
                s.mean.len(),
                s.std.len()
            )));
        }
        if !s.mean.iter().chain(&s.std).all(|v| v.is_finite()) || s.std.iter().any(|&v| v <= 0.0) {
            return Err(NnError::Format(
                "standardizer values must be finite, std > 0".into(),
            ));
        }
    }
    load_state_dict(&mut model, bytes)?;
    Ok(model)
}

/// Replaces the tensors of `model` with those of a safetensors file laid out as
/// [`layout`] describes (a PyTorch `state_dict` of the equivalent Sequential). Every tensor
/// must be present with its dtype and shape and finite values; no other tensor may be.
pub fn load_state_dict(model: &mut Model, bytes: &[u8]) -> Result<()> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| NnError::Format(e.to_string()))?;
    let (slots, _) = layout(&model.spec);
    let expected: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
    if let Some(extra) = st.names().into_iter().find(|n| !expected.contains(n)) {
        return Err(NnError::Format(format!(
            "unexpected tensor `{extra}`; expected {}",
            expected.join(", ")
        )));
    }
    for slot in &slots {
        let view = st
            .tensor(&slot.name)
            .map_err(|_| NnError::Format(format!("tensor `{}` is missing", slot.name)))?;
        if view.shape() != slot.shape.as_slice() {
            return Err(NnError::Shape {
                what: format!("tensor `{}`", slot.name),
                expected: slot.shape.clone(),
                got: view.shape().to_vec(),
            });
        }
        if let Source::BatchesTracked(l) = slot.source {
            let batches = read_i64(&slot.name, &view)?;
            if let Some(s) = model.bn_stats[l].as_mut() {
                s.batches = batches.max(0) as u64;
            }
            continue;
        }
        let values = read_f32(&slot.name, &view)?;
        match slot.source {
            Source::Param(i) => {
                set_param(&mut model.params[i], values);
            }
            Source::RunningMean(l) => stats(model, l, &slot.name)?.mean = values,
            Source::RunningVar(l) => {
                if values.iter().any(|&v| v < 0.0) {
                    return Err(NnError::Format(format!(
                        "tensor `{}` has a negative variance",
                        slot.name
                    )));
                }
                stats(model, l, &slot.name)?.var = values
            }
            Source::BatchesTracked(_) => unreachable!("handled above"),
        }
    }
    Ok(())
}

fn stats<'m>(
    model: &'m mut Model,
    l: usize,
    name: &str,
) -> Result<&'m mut super::model::RunningStats> {
    model.bn_stats[l]
        .as_mut()
        .ok_or_else(|| NnError::Format(format!("tensor `{name}` without batch norm")))
}

fn bn(model: &Model, l: usize) -> Result<&super::model::RunningStats> {
    model.bn_stats[l]
        .as_ref()
        .ok_or_else(|| NnError::Format(format!("hidden layer {l} has no batch-norm statistics")))
}

fn read_f32(name: &str, view: &TensorView) -> Result<Vec<f32>> {
    if view.dtype() != Dtype::F32 {
        return Err(NnError::Format(format!(
            "tensor `{name}` is {:?}; expected F32",
            view.dtype()
        )));
    }
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(NnError::Format(format!(
            "tensor `{name}` element {i} is {}, not finite",
            values[i]
        )));
    }
    Ok(values)
}

fn read_i64(name: &str, view: &TensorView) -> Result<i64> {
    match (view.dtype(), view.data()) {
        (Dtype::I64, d) if d.len() == 8 => Ok(i64::from_le_bytes(d.try_into().expect("8 bytes"))),
        (dtype, _) => Err(NnError::Format(format!(
            "tensor `{name}` is {dtype:?}; expected an I64 scalar"
        ))),
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| NnError::Format(e.to_string()))
}

/// Sets a parameter from a file's values: a weight comes as PyTorch's `[out, in]` and is kept
/// as `[in, out]`; everything else is as it is. `values` has the parameter's element count.
pub(super) fn set_param(p: &mut super::model::Param, values: Vec<f32>) {
    if p.kind == ParamKind::Weight {
        let (rows, cols) = p.shape;
        for r in 0..rows {
            for c in 0..cols {
                p.data[r * cols + c] = values[c * rows + r];
            }
        }
    } else {
        p.data = values.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::head::Head;

    fn trained_like(act: Activation, bn: bool, dropout: f32) -> Model {
        let mut spec = ModelSpec::new(&[3, 5, 4, 2], act, Head::Softmax);
        spec.batch_norm = bn;
        spec.dropout = dropout;
        let mut m = Model::new(spec, 11).unwrap();
        m.standardizer = Some(Standardizer {
            mean: vec![0.1, -3.7e-5, 12345.679],
            std: vec![1.0 / 3.0, 2.5e-7, 7.0],
        });
        m.labels = vec!["cat".into(), "dog".into()];
        m.task = Some(Task::Classification);
        for (k, s) in m.bn_stats.iter_mut().flatten().enumerate() {
            s.mean.iter_mut().for_each(|v| *v = 0.3 * k as f32 + 0.1);
            s.var.iter_mut().for_each(|v| *v = 1.7);
            s.batches = 42;
        }
        m
    }

    #[test]
    fn models_round_trip_bit_for_bit() {
        for (act, bn, dropout) in [
            (Activation::Relu, false, 0.0),
            (Activation::Prelu { init: 0.2 }, true, 0.3),
            (Activation::Tanh, true, 0.0),
        ] {
            let m = trained_like(act, bn, dropout);
            let bytes = to_safetensors(&m).unwrap();
            let back = from_safetensors(&bytes).unwrap();
            assert_eq!(back, m);
            assert_eq!(to_safetensors(&back).unwrap(), bytes);
        }
    }

    #[test]
    fn layout_follows_the_pytorch_sequential() {
        let m = trained_like(Activation::Prelu { init: 0.2 }, true, 0.3);
        let (slots, modules) = layout(&m.spec);
        assert_eq!(
            modules,
            vec![
                "nn.Linear(3, 5)",
                "nn.BatchNorm1d(5)",
                "nn.PReLU(5)",
                "nn.Dropout(0.3)",
                "nn.Linear(5, 4)",
                "nn.BatchNorm1d(4)",
                "nn.PReLU(4)",
                "nn.Dropout(0.3)",
                "nn.Linear(4, 2)"
            ]
        );
        let names: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            &names[..8],
            &[
                "0.weight",
                "0.bias",
                "1.weight",
                "1.bias",
                "1.running_mean",
                "1.running_var",
                "1.num_batches_tracked",
                "2.weight"
            ]
        );
        assert_eq!(slots[0].shape, vec![5, 3]);
        assert_eq!(names.last(), Some(&"8.bias"));
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let m = trained_like(Activation::Relu, false, 0.0);
        let bytes = to_safetensors(&m).unwrap();
        // truncated
        assert!(from_safetensors(&bytes[..bytes.len() - 3]).is_err());
        // absurd header length
        let mut absurd = bytes.clone();
        absurd[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(from_safetensors(&absurd).is_err());
        // a NaN weight
        let mut nan = m.clone();
        nan.params[0].data[0] = f32::NAN;
        let err = from_safetensors(&to_safetensors(&nan).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("0.weight") && err.contains("not finite"),
            "{err}"
        );
        // unknown format version
        let at = bytes
            .windows(FORMAT.len())
            .position(|w| w == FORMAT.as_bytes())
            .unwrap();
        let mut v9 = bytes.clone();
        v9[at + FORMAT.len() - 1] = b'9';
        let err = from_safetensors(&v9).unwrap_err().to_string();
        assert!(err.contains("unknown format version"), "{err}");
        // a tensor of the wrong shape
        let mut other = trained_like(Activation::Relu, false, 0.0);
        other.spec.layers[1] = 6;
        let wrong = to_safetensors(&Model::new(other.spec.clone(), 0).unwrap()).unwrap();
        let err = load_state_dict(&mut m.clone(), &wrong).unwrap_err();
        assert!(matches!(err, NnError::Shape { .. }), "{err}");
    }
}
