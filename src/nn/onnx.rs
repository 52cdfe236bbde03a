//! A model as ONNX: the same numbers as [`Model::predict`], in a graph onnxruntime runs.
//!
//! Target: **opset 17** of the default domain, IR version 8. The graph takes `input`, FP32
//! `[N, d]` with a symbolic batch dimension `N`, and answers `output`, FP32 `[N, k]`: what
//! `predict` answers (probabilities for softmax and sigmoid heads, values for identity).
//!
//! Nodes, in order:
//! - standardization (when the version has statistics): `Sub(input, standardizer.mean)`, then
//!   `Mul(·, standardizer.inv_std)` with `inv_std = 1/std` in `f32`, exactly as
//!   [`super::data::Standardizer::apply`] computes it;
//! - per layer, `Gemm(x, "{i}.weight", "{i}.bias", transB=1)`, the weight in PyTorch's
//!   `[out, in]` layout; initializers are named as in the safetensors file, by the index of the
//!   module in the equivalent `nn.Sequential` (see [`super::serialize::layout`]);
//! - batch norm as a `BatchNormalization` node (not folded into the Gemm, so that the graph
//!   keeps the Sequential's tensors as they are; onnxruntime fuses it when it optimizes), with
//!   `epsilon = 1e-5`, as PyTorch's `BatchNorm1d` in eval mode;
//! - the activation: `Relu`, `Sigmoid`, `Tanh`, `LeakyRelu(alpha)`,
//!   `PRelu(x, "{i}.weight")` with the slopes shaped `[units]` (broadcast over the rows),
//!   `Elu(alpha)`, `Selu(alpha, gamma)` with our (PyTorch's) constants, `Softplus` (which
//!   onnxruntime computes in the overflow-safe form `max(x,0) + log1p(exp(-|x|))`, like ours),
//!   SiLU as `Mul(x, Sigmoid(x))`, exact GELU as `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)`,
//!   and nothing for identity;
//! - the head: `Softmax(axis=1)`, `Sigmoid`, or nothing (identity).
//!
//! Dropout is a no-op at inference and has no node. The protobuf is written by hand by a small
//! writer below (varints and length-delimited fields, field numbers of `onnx.proto`), so no
//! protobuf dependency is needed; fields are written in field-number order, as protobuf's own
//! serializers do, so the bytes match what the `onnx` Python package would write.

use super::activation::{Activation, SELU_ALPHA, SELU_LAMBDA};
use super::head::Head;
use super::model::{Model, ParamKind, BN_EPS};

/// The opset of the default domain the graph uses.
pub const OPSET: i64 = 17;
/// The ONNX IR version written (the one that goes with opset 17).
pub const IR_VERSION: i64 = 8;
/// The graph's input.
pub const INPUT: &str = "input";
/// The graph's output.
pub const OUTPUT: &str = "output";

// TensorProto.DataType
const FLOAT: i64 = 1;
// AttributeProto.AttributeType
const ATTR_FLOAT: i64 = 1;
const ATTR_INT: i64 = 2;

/// A protobuf message being written: fields appended in the order they are given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message(Vec<u8>);

impl Message {
    /// An empty message.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded bytes.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn key(&mut self, field: u32, wire: u8) {
        write_varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
    }

    /// A varint field (`int64`, `int32`, enums); negative values take ten bytes, as protobuf
    /// writes them.
    pub fn int(&mut self, field: u32, value: i64) -> &mut Self {
        self.key(field, 0);
        write_varint(&mut self.0, value as u64);
        self
    }

    /// A `float` field (fixed 32 bits, little-endian).
    pub fn float(&mut self, field: u32, value: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A length-delimited field: `bytes`, or an embedded message's encoding.
    pub fn bytes(&mut self, field: u32, value: &[u8]) -> &mut Self {
        self.key(field, 2);
        write_varint(&mut self.0, value.len() as u64);
        self.0.extend_from_slice(value);
        self
    }

    /// A `string` field.
    pub fn string(&mut self, field: u32, value: &str) -> &mut Self {
        self.bytes(field, value.as_bytes())
    }

    /// An embedded message.
    pub fn message(&mut self, field: u32, value: &Message) -> &mut Self {
        self.bytes(field, &value.0)
    }

    /// The key and length of a length-delimited field whose `len` bytes the caller appends.
    fn length_prefix(&mut self, field: u32, len: usize) -> &mut Self {
        self.key(field, 2);
        write_varint(&mut self.0, len as u64);
        self
    }

    /// Bytes encoded so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is encoded yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Appends `value` as a base-128 varint, low group first.
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A node attribute.
#[derive(Clone, Debug, PartialEq)]
enum Attr {
    Float(&'static str, f32),
    Int(&'static str, i64),
}

/// A graph node.
#[derive(Clone, Debug, PartialEq)]
struct Node {
    op: &'static str,
    name: String,
    inputs: Vec<String>,
    output: String,
    attrs: Vec<Attr>,
}

impl Node {
    fn encode(&self) -> Message {
        let mut m = Message::new();
        for input in &self.inputs {
            m.string(1, input);
        }
        m.string(2, &self.output)
            .string(3, &self.name)
            .string(4, self.op);
        for attr in &self.attrs {
            let mut a = Message::new();
            match *attr {
                Attr::Float(name, f) => a.string(1, name).float(2, f).int(20, ATTR_FLOAT),
                Attr::Int(name, i) => a.string(1, name).int(3, i).int(20, ATTR_INT),
            };
            m.message(5, &a);
        }
        m
    }
}

/// The values of an initializer, borrowed from the model where they can be, so that a large
/// model is not copied before it is written.
#[derive(Clone, Debug, PartialEq)]
enum Values<'a> {
    /// As they are.
    Slice(&'a [f32]),
    /// A row-major `[rows, cols]` matrix written as `[cols, rows]`.
    Transposed {
        data: &'a [f32],
        rows: usize,
        cols: usize,
    },
    /// Computed here (standardization's `1/std`, constants).
    Owned(Vec<f32>),
}

impl Values<'_> {
    fn count(&self) -> usize {
        match self {
            Values::Slice(v) => v.len(),
            Values::Transposed { data, .. } => data.len(),
            Values::Owned(v) => v.len(),
        }
    }

    fn write_le(&self, out: &mut Vec<u8>) {
        match self {
            Values::Slice(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::Owned(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Values::Transposed { data, rows, cols } => {
                for c in 0..*cols {
                    for r in 0..*rows {
                        out.extend_from_slice(&data[r * cols + c].to_le_bytes());
                    }
                }
            }
        }
    }
}

/// A float initializer (`TensorProto` with `raw_data`).
#[derive(Clone, Debug, PartialEq)]
struct Initializer<'a> {
    name: String,
    dims: Vec<usize>,
    values: Values<'a>,
}

impl Initializer<'_> {
    /// Every field up to and including the key and length of `raw_data`, whose bytes follow.
    fn head(&self) -> Message {
        let mut m = Message::new();
        for &d in &self.dims {
            m.int(1, d as i64);
        }
        m.int(2, FLOAT)
            .string(8, &self.name)
            .length_prefix(9, self.values.count() * 4);
        m
    }

    /// The encoded length of the `TensorProto`.
    fn len(&self) -> usize {
        self.head().len() + self.values.count() * 4
    }

    /// Appends the `TensorProto` (without a key of its own).
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head().0);
        self.values.write_le(out);
    }
}

/// `ValueInfoProto` of an FP32 tensor `[N, width]`.
fn value_info(name: &str, width: usize) -> Message {
    let mut batch = Message::new();
    batch.string(2, "N");
    let mut columns = Message::new();
    columns.int(1, width as i64);
    let mut shape = Message::new();
    shape.message(1, &batch).message(1, &columns);
    let mut tensor = Message::new();
    tensor.int(1, FLOAT).message(2, &shape);
    let mut ty = Message::new();
    ty.message(1, &tensor);
    let mut info = Message::new();
    info.string(1, name).message(2, &ty);
    info
}

/// The graph being built: nodes, initializers, and the name of the current value.
#[derive(Debug, Default)]
struct Graph<'a> {
    nodes: Vec<Node>,
    initializers: Vec<Initializer<'a>>,
}

impl<'a> Graph<'a> {
    fn node(
        &mut self,
        op: &'static str,
        name: String,
        inputs: &[&str],
        attrs: Vec<Attr>,
    ) -> String {
        let output = name.clone();
        self.nodes.push(Node {
            op,
            name,
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: output.clone(),
            attrs,
        });
        output
    }

    fn init(&mut self, name: String, dims: Vec<usize>, values: Values<'a>) -> String {
        self.initializers.push(Initializer {
            name: name.clone(),
            dims,
            values,
        });
        name
    }

    fn scalar(&mut self, name: &str, value: f32) -> String {
        if !self.initializers.iter().any(|i| i.name == name) {
            self.init(name.to_owned(), vec![], Values::Owned(vec![value]));
        }
        name.to_owned()
    }

    /// The nodes of `act` on `x`, for module `i` of the Sequential; returns the output name.
    fn activation(
        &mut self,
        act: Activation,
        x: &str,
        i: usize,
        slopes: Option<&'a [f32]>,
    ) -> String {
        let name = |s: &str| format!("{i}.{s}");
        match act {
            Activation::Identity => x.to_owned(),
            Activation::Sigmoid => self.node("Sigmoid", name("sigmoid"), &[x], vec![]),
            Activation::Tanh => self.node("Tanh", name("tanh"), &[x], vec![]),
            Activation::Relu => self.node("Relu", name("relu"), &[x], vec![]),
            Activation::LeakyRelu { alpha } => self.node(
                "LeakyRelu",
                name("leaky_relu"),
                &[x],
                vec![Attr::Float("alpha", alpha)],
            ),
            Activation::Prelu { .. } => {
                let slopes = slopes.unwrap_or_default();
                let w = self.init(name("weight"), vec![slopes.len()], Values::Slice(slopes));
                self.node("PRelu", name("prelu"), &[x, &w], vec![])
            }
            Activation::Elu { alpha } => {
                self.node("Elu", name("elu"), &[x], vec![Attr::Float("alpha", alpha)])
            }
            Activation::Selu => self.node(
                "Selu",
                name("selu"),
                &[x],
                vec![
                    Attr::Float("alpha", SELU_ALPHA),
                    Attr::Float("gamma", SELU_LAMBDA),
                ],
            ),
            Activation::Gelu => {
                let sqrt2 = self.scalar("const.sqrt2", std::f32::consts::SQRT_2);
                let one = self.scalar("const.one", 1.0);
                let half = self.scalar("const.half", 0.5);
                let d = self.node("Div", name("gelu.div"), &[x, &sqrt2], vec![]);
                let e = self.node("Erf", name("gelu.erf"), &[&d], vec![]);
                let a = self.node("Add", name("gelu.add"), &[&e, &one], vec![]);
                let m = self.node("Mul", name("gelu.mul"), &[x, &a], vec![]);
                self.node("Mul", name("gelu"), &[&m, &half], vec![])
            }
            Activation::Silu => {
                let s = self.node("Sigmoid", name("silu.sigmoid"), &[x], vec![]);
                self.node("Mul", name("silu"), &[x, &s], vec![])
            }
            Activation::Softplus => self.node("Softplus", name("softplus"), &[x], vec![]),
        }
    }
}

/// Where each layer's modules sit in the equivalent `nn.Sequential` (as
/// [`super::serialize::layout`] numbers them): (linear, batch norm, activation).
fn sequential_indices(model: &Model) -> Vec<(usize, Option<usize>, usize)> {
    let spec = &model.spec;
    let mut next = 0;
    let mut out = Vec::new();
    for l in 0..spec.layers.len() - 1 {
        let linear = next;
        next += 1;
        if l == spec.hidden() {
            out.push((linear, None, linear));
            break;
        }
        let bn = spec.batch_norm.then(|| {
            next += 1;
            next - 1
        });
        let act = next;
        next += 1;
        if spec.dropout > 0.0 {
            next += 1;
        }
        out.push((linear, bn, act));
    }
    out
}

/// `model` as an ONNX `ModelProto`. `name` and `version` go into the graph name and the doc
/// string; `metadata` into `metadata_props` (key, value).
#[must_use]
pub fn to_onnx(model: &Model, name: &str, version: u32, metadata: &[(&str, String)]) -> Vec<u8> {
    let spec = &model.spec;
    let mut g = Graph::default();
    let mut x = INPUT.to_owned();
    if let Some(s) = &model.standardizer {
        let mean = g.init(
            "standardizer.mean".into(),
            vec![s.mean.len()],
            Values::Slice(&s.mean),
        );
        let inv: Vec<f32> = s.std.iter().map(|v| 1.0 / v).collect();
        let inv = g.init(
            "standardizer.inv_std".into(),
            vec![inv.len()],
            Values::Owned(inv),
        );
        let centred = g.node("Sub", "standardizer.sub".into(), &[&x, &mean], vec![]);
        x = g.node("Mul", "standardizer.mul".into(), &[&centred, &inv], vec![]);
    }
    let indices = sequential_indices(model);
    for (l, (lp, &(linear, bn, act))) in model.layer_params().iter().zip(&indices).enumerate() {
        let (fan_in, fan_out) = (spec.layers[l], spec.layers[l + 1]);
        let w = &model.params[lp.weight];
        debug_assert_eq!(w.kind, ParamKind::Weight);
        // Ours [in, out] → PyTorch's [out, in], for transB = 1.
        let transposed = Values::Transposed {
            data: &w.data,
            rows: fan_in,
            cols: fan_out,
        };
        let w = g.init(
            format!("{linear}.weight"),
            vec![fan_out, fan_in],
            transposed,
        );
        let b = g.init(
            format!("{linear}.bias"),
            vec![fan_out],
            Values::Slice(&model.params[lp.bias].data),
        );
        x = g.node(
            "Gemm",
            format!("{linear}.gemm"),
            &[&x, &w, &b],
            vec![Attr::Int("transB", 1)],
        );
        if l == spec.hidden() {
            break;
        }
        if let (Some(i), Some((gamma, beta)), Some(stats)) = (bn, lp.bn, &model.bn_stats[l]) {
            let scale = g.init(
                format!("{i}.weight"),
                vec![fan_out],
                Values::Slice(&model.params[gamma].data),
            );
            let shift = g.init(
                format!("{i}.bias"),
                vec![fan_out],
                Values::Slice(&model.params[beta].data),
            );
            let mean = g.init(
                format!("{i}.running_mean"),
                vec![fan_out],
                Values::Slice(&stats.mean),
            );
            let var = g.init(
                format!("{i}.running_var"),
                vec![fan_out],
                Values::Slice(&stats.var),
            );
            x = g.node(
                "BatchNormalization",
                format!("{i}.batch_norm"),
                &[&x, &scale, &shift, &mean, &var],
                vec![Attr::Float("epsilon", BN_EPS)],
            );
        }
        let slopes = lp.prelu.map(|p| model.params[p].data.as_slice());
        x = g.activation(spec.activations[l], &x, act, slopes);
    }
    match spec.output {
        Head::Softmax => {
            g.node("Softmax", OUTPUT.into(), &[&x], vec![Attr::Int("axis", 1)]);
        }
        Head::Sigmoid => {
            g.node("Sigmoid", OUTPUT.into(), &[&x], vec![]);
        }
        Head::Identity => {
            // The last Gemm's output is the graph's output.
            if let Some(last) = g.nodes.last_mut() {
                last.output = OUTPUT.into();
            }
        }
    }

    // The graph's small fields before and after its initializers (field order 1, 2, 5, 11,
    // 12); the initializers are written straight into the output, so the model's tensors are
    // not copied on the way.
    let mut before = Message::new();
    for node in &g.nodes {
        before.message(1, &node.encode());
    }
    before.string(2, &format!("{name}-v{version}"));
    let mut after = Message::new();
    after
        .message(11, &value_info(INPUT, spec.inputs()))
        .message(12, &value_info(OUTPUT, spec.outputs()));
    let mut inits_len = 0;
    for init in &g.initializers {
        let mut key = Message::new();
        key.length_prefix(5, init.len());
        inits_len += key.len() + init.len();
    }
    let graph_len = before.len() + inits_len + after.len();

    let mut m = Message::new();
    m.int(1, IR_VERSION)
        .string(2, "mlp-lab")
        .string(3, env!("CARGO_PKG_VERSION"))
        .int(5, i64::from(version))
        .string(6, &format!("mlp-lab model {name}, version {version}"))
        .length_prefix(7, graph_len);
    let mut tail = Message::new();
    let mut opset = Message::new();
    opset.string(1, "").int(2, OPSET);
    tail.message(8, &opset);
    for (key, value) in metadata {
        let mut entry = Message::new();
        entry.string(1, key).string(2, value);
        tail.message(14, &entry);
    }
    let mut out = m.into_bytes();
    out.reserve_exact(graph_len + tail.len());
    out.extend_from_slice(&before.0);
    for init in &g.initializers {
        let mut key = Message::new();
        key.length_prefix(5, init.len());
        out.extend_from_slice(&key.0);
        init.write(&mut out);
    }
    out.extend_from_slice(&after.0);
    out.extend_from_slice(&tail.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::data::Standardizer;
    use crate::nn::model::ModelSpec;
    use crate::nn::serialize::layout;

    /// A protobuf field as read back: number and value.
    #[derive(Debug)]
    enum Value<'a> {
        Int(u64),
        Fixed32(u32),
        Bytes(&'a [u8]),
    }

    fn read_varint(b: &[u8], at: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn fields(b: &[u8]) -> Vec<(u32, Value<'_>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < b.len() {
            let key = read_varint(b, &mut at);
            let field = (key >> 3) as u32;
            let value = match key & 7 {
                0 => Value::Int(read_varint(b, &mut at)),
                5 => {
                    let v = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
                    at += 4;
                    Value::Fixed32(v)
                }
                2 => {
                    let n = read_varint(b, &mut at) as usize;
                    at += n;
                    Value::Bytes(&b[at - n..at])
                }
                w => panic!("wire type {w}"),
            };
            out.push((field, value));
        }
        out
    }

    fn bytes_of<'a>(f: &'a [(u32, Value<'a>)], n: u32) -> Vec<&'a [u8]> {
        f.iter()
            .filter_map(|(k, v)| match v {
                Value::Bytes(b) if *k == n => Some(*b),
                _ => None,
            })
            .collect()
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    /// (op_type, inputs, output) of every node, and initializer names with dims.
    #[allow(clippy::type_complexity)]
    fn graph_of(model: &[u8]) -> (Vec<(String, Vec<String>, String)>, Vec<(String, Vec<u64>)>) {
        let top = fields(model);
        let graph = fields(bytes_of(&top, 7)[0]);
        let nodes = bytes_of(&graph, 1)
            .into_iter()
            .map(|n| {
                let f = fields(n);
                let op = text(bytes_of(&f, 4)[0]).to_owned();
                let ins = bytes_of(&f, 1)
                    .into_iter()
                    .map(|s| text(s).into())
                    .collect();
                (op, ins, text(bytes_of(&f, 2)[0]).to_owned())
            })
            .collect();
        let inits = bytes_of(&graph, 5)
            .into_iter()
            .map(|t| {
                let f = fields(t);
                let dims = f
                    .iter()
                    .filter_map(|(k, v)| match v {
                        Value::Int(d) if *k == 1 => Some(*d),
                        _ => None,
                    })
                    .collect();
                (text(bytes_of(&f, 8)[0]).to_owned(), dims)
            })
            .collect();
        (nodes, inits)
    }

    #[test]
    fn varints_are_base_128_low_group_first() {
        // Examples from the protobuf encoding guide: 1 → 01, 150 → 96 01, 300 → ac 02.
        for (v, want) in [
            (1u64, vec![0x01]),
            (150, vec![0x96, 0x01]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out, want, "{v}");
        }
        let mut neg = Message::new();
        neg.int(1, -1);
        // A negative int64 is its two's complement as ten varint bytes.
        assert_eq!(neg.into_bytes().len(), 1 + 10);
    }

    #[test]
    fn a_node_encodes_as_the_onnx_package_does() {
        // From onnx 1.23 (Python):
        // onnx.helper.make_node("LeakyRelu", ["x"], ["y"], name="n", alpha=0.5)
        //     .SerializeToString().hex()
        let want = "0a01781201791a016e22094c65616b7952656c752a0f0a05616c7068611500\
                    00003fa00101";
        let node = Node {
            op: "LeakyRelu",
            name: "n".into(),
            inputs: vec!["x".into()],
            output: "y".into(),
            attrs: vec![Attr::Float("alpha", 0.5)],
        };
        let got: String = node
            .encode()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want.replace(char::is_whitespace, ""));
    }

    #[test]
    fn a_tensor_encodes_as_the_onnx_package_does() {
        // From onnx 1.23 (Python):
        // onnx.numpy_helper.from_array(np.array([[1, 2]], np.float32), "w")
        //     .SerializeToString().hex()
        let want = "0801080210014201774a080000803f00000040";
        let t = Initializer {
            name: "w".into(),
            dims: vec![1, 2],
            values: Values::Slice(&[1.0, 2.0]),
        };
        let mut out = Vec::new();
        t.write(&mut out);
        let got: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
        assert_eq!(t.len(), out.len());
        // The same matrix given as its transpose [2, 1] comes out the same.
        let transposed = Initializer {
            values: Values::Transposed {
                data: &[1.0, 2.0],
                rows: 2,
                cols: 1,
            },
            ..t.clone()
        };
        let mut again = Vec::new();
        transposed.write(&mut again);
        assert_eq!(again, out);
    }

    fn model(act: Activation, bn: bool, dropout: f32, head: Head) -> Model {
        let mut spec = ModelSpec::new(&[3, 5, 4, 2], act, head);
        spec.batch_norm = bn;
        spec.dropout = dropout;
        let mut m = Model::new(spec, 7).unwrap();
        m.standardizer = Some(Standardizer {
            mean: vec![0.5, -1.0, 2.0],
            std: vec![2.0, 0.25, 1.0],
        });
        m
    }

    #[test]
    fn the_graph_is_standardize_gemm_batch_norm_activation_and_head() {
        let m = model(Activation::Prelu { init: 0.25 }, true, 0.2, Head::Softmax);
        let (nodes, inits) = graph_of(&to_onnx(&m, "m", 1, &[]));
        let ops: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Sub",
                "Mul",
                "Gemm",
                "BatchNormalization",
                "PRelu",
                "Gemm",
                "BatchNormalization",
                "PRelu",
                "Gemm",
                "Softmax"
            ]
        );
        assert_eq!(nodes[0].1, ["input", "standardizer.mean"]);
        assert_eq!(nodes[2].1, ["standardizer.mul", "0.weight", "0.bias"]);
        assert_eq!(nodes.last().unwrap().2, "output");
        // Initializers carry the safetensors names and the [out, in] layout.
        let (slots, _) = layout(&m.spec);
        for slot in slots
            .iter()
            .filter(|s| !s.name.ends_with("num_batches_tracked"))
        {
            let found = inits.iter().find(|(n, _)| *n == slot.name);
            let dims: Vec<u64> = slot.shape.iter().map(|&d| d as u64).collect();
            assert_eq!(found.map(|f| &f.1), Some(&dims), "{}", slot.name);
        }
    }

    #[test]
    fn every_activation_and_head_has_its_nodes() {
        let cases: [(Activation, &[&str]); 11] = [
            (Activation::Identity, &[]),
            (Activation::Sigmoid, &["Sigmoid"]),
            (Activation::Tanh, &["Tanh"]),
            (Activation::Relu, &["Relu"]),
            (Activation::LeakyRelu { alpha: 0.1 }, &["LeakyRelu"]),
            (Activation::Prelu { init: 0.25 }, &["PRelu"]),
            (Activation::Elu { alpha: 1.0 }, &["Elu"]),
            (Activation::Selu, &["Selu"]),
            (Activation::Gelu, &["Div", "Erf", "Add", "Mul", "Mul"]),
            (Activation::Silu, &["Sigmoid", "Mul"]),
            (Activation::Softplus, &["Softplus"]),
        ];
        for (act, act_ops) in cases {
            for (head, head_ops) in [
                (Head::Softmax, &["Softmax"][..]),
                (Head::Sigmoid, &["Sigmoid"][..]),
                (Head::Identity, &[][..]),
            ] {
                let mut m = model(act, false, 0.0, head);
                m.standardizer = None;
                let (nodes, _) = graph_of(&to_onnx(&m, "m", 1, &[]));
                let ops: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
                let mut want = vec!["Gemm"];
                want.extend_from_slice(act_ops);
                want.push("Gemm");
                want.extend_from_slice(act_ops);
                want.push("Gemm");
                want.extend_from_slice(head_ops);
                assert_eq!(ops, want, "{act:?} {head:?}");
                assert_eq!(nodes[0].1[0], "input");
                assert_eq!(nodes.last().unwrap().2, "output", "{act:?} {head:?}");
            }
        }
    }

    #[test]
    fn the_model_names_its_opset_io_and_metadata() {
        let m = model(Activation::Relu, false, 0.0, Head::Sigmoid);
        let bytes = to_onnx(&m, "xor", 3, &[("labels", "[\"a\"]".into())]);
        let top = fields(&bytes);
        assert!(matches!(top[0], (1, Value::Int(8))));
        let opset = fields(bytes_of(&top, 8)[0]);
        assert!(matches!(opset[1], (2, Value::Int(17))));
        let meta = fields(bytes_of(&top, 14)[0]);
        assert!(matches!(meta[0], (1, Value::Bytes(b"labels"))));
        let graph = fields(bytes_of(&top, 7)[0]);
        assert_eq!(text(bytes_of(&graph, 2)[0]), "xor-v3");
        let input = fields(bytes_of(&graph, 11)[0]);
        assert_eq!(text(bytes_of(&input, 1)[0]), "input");
        // type → tensor_type → shape → dims: "N" and 3.
        let ty = fields(bytes_of(&input, 2)[0]);
        let tensor = fields(bytes_of(&ty, 1)[0]);
        assert!(matches!(tensor[0], (1, Value::Int(1))));
        let shape = fields(bytes_of(&tensor, 2)[0]);
        let dims = bytes_of(&shape, 1)
            .into_iter()
            .map(|d| fields(d).into_iter().next().unwrap())
            .collect::<Vec<_>>();
        assert!(matches!(dims[0], (2, Value::Bytes(b"N"))));
        assert!(matches!(dims[1], (1, Value::Int(3))));
        // A float attribute is fixed32: alpha of the SELU constants round-trips.
        let selu = to_onnx(
            &model(Activation::Selu, false, 0.0, Head::Identity),
            "s",
            1,
            &[],
        );
        let top = fields(&selu);
        let graph = fields(bytes_of(&top, 7)[0]);
        let node = fields(bytes_of(&graph, 1)[3]);
        let attr = fields(bytes_of(&node, 5)[0]);
        assert!(matches!(attr[1], (2, Value::Fixed32(v)) if f32::from_bits(v) == SELU_ALPHA));
    }

    #[test]
    fn sequential_indices_agree_with_the_safetensors_layout() {
        for (bn, dropout, act) in [
            (false, 0.0, Activation::Relu),
            (true, 0.3, Activation::Prelu { init: 0.1 }),
            (true, 0.0, Activation::Tanh),
        ] {
            let m = model(act, bn, dropout, Head::Softmax);
            let (slots, _) = layout(&m.spec);
            for (l, (linear, bn_i, _)) in sequential_indices(&m).into_iter().enumerate() {
                let lp = m.layer_params()[l];
                let name = |i: usize| {
                    slots
                        .iter()
                        .find(|s| s.source == crate::nn::serialize::Source::Param(i))
                        .map(|s| s.name.clone())
                };
                assert_eq!(name(lp.weight), Some(format!("{linear}.weight")));
                if let (Some(i), Some((g, _))) = (bn_i, lp.bn) {
                    assert_eq!(name(g), Some(format!("{i}.weight")));
                }
            }
        }
    }
}
