//! What a client asks for (`POST /v1/experiments` without its `dataset`, which the HTTP layer
//! resolves as `POST /v1/jobs` does), its validation, and the expansion of the grid into cells.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Limit;
use crate::nn::{Activation, Head, Init, ModelSpec, OptimizerConfig, TrainConfig};
use crate::registry::RegistryError;

/// Longest experiment name, in bytes.
pub const MAX_NAME_LEN: usize = 100;

/// Most seeds an experiment may list.
pub const MAX_SEEDS: usize = 100;

/// The axes a grid may have, in the order cells are enumerated (the first varies slowest).
pub const AXES: [&str; 6] = [
    "activations",
    "inits",
    "hidden_layers",
    "dropout",
    "batch_norm",
    "learning_rates",
];

/// A model spec without a name: the base every cell starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseModel {
    /// Input size, hidden sizes…, output size.
    pub layers: Vec<usize>,
    /// The activation of every hidden layer (default `relu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// One activation per hidden layer, instead of `activation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<Vec<Activation>>,
    /// The output head.
    pub output: Head,
    /// Weight init (default: per activation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    /// Dropout after each hidden activation (default 0).
    #[serde(default)]
    pub dropout: f64,
    /// Batch norm on each hidden layer (default false).
    #[serde(default)]
    pub batch_norm: bool,
}

/// The axes of an experiment; an absent axis keeps the base value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Activations of every hidden layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<Vec<Activation>>,
    /// Weight inits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inits: Option<Vec<Init>>,
    /// Hidden layer widths (the input and output sizes stay the base's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_layers: Option<Vec<Vec<usize>>>,
    /// Dropout probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<Vec<f64>>,
    /// Batch norm off or on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_norm: Option<Vec<bool>>,
    /// The optimizer's learning rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rates: Option<Vec<f32>>,
}

/// An experiment request, without its dataset.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentRequest {
    /// An optional name (not unique) that prefixes its models' names.
    #[serde(default)]
    pub name: Option<String>,
    /// The base model.
    pub model: BaseModel,
    /// The base training request (no `seed`: runs take theirs from `seeds`).
    #[serde(default)]
    pub training: TrainConfig,
    /// The axes.
    pub grid: Grid,
    /// One run of every cell per seed.
    pub seeds: Vec<u64>,
}

/// One value of every axis the grid has.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CellParams {
    activation: Option<Activation>,
    init: Option<Init>,
    hidden_layers: Option<Vec<usize>>,
    dropout: Option<f64>,
    batch_norm: Option<bool>,
    learning_rate: Option<f32>,
}

/// A cell of the grid, ready to be created: its label, parameters, spec and training config
/// (whose seed each run sets).
#[derive(Clone, Debug)]
pub struct CellPlan {
    /// `activation=relu, hidden_layers=[32,32]`.
    pub label: String,
    /// Only the grid's axes, by their singular names.
    pub params: Map<String, Value>,
    /// The model of the cell.
    pub spec: ModelSpec,
    /// The training of the cell.
    pub config: TrainConfig,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> RegistryError {
    RegistryError::invalid(field, message)
}

impl Grid {
    /// How many cells the grid has (saturating), after [`Grid::check`].
    #[must_use]
    pub fn cell_count(&self) -> usize {
        self.lengths()
            .iter()
            .flatten()
            .fold(1usize, |n, &len| n.saturating_mul(len))
    }

    fn lengths(&self) -> [Option<usize>; 6] {
        [
            self.activations.as_ref().map(Vec::len),
            self.inits.as_ref().map(Vec::len),
            self.hidden_layers.as_ref().map(Vec::len),
            self.dropout.as_ref().map(Vec::len),
            self.batch_norm.as_ref().map(Vec::len),
            self.learning_rates.as_ref().map(Vec::len),
        ]
    }

    /// Refuses a grid with no axis, an empty axis, or values that are invalid on their own.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] naming `grid` or `grid.<axis>[i]`.
    pub fn check(&self) -> Result<(), RegistryError> {
        let lengths = self.lengths();
        if lengths.iter().all(Option::is_none) {
            return Err(invalid(
                "grid",
                format!("give at least one axis of: {}", AXES.join(", ")),
            ));
        }
        for (axis, len) in AXES.iter().zip(lengths) {
            if len == Some(0) {
                return Err(invalid(
                    format!("grid.{axis}"),
                    "an axis needs at least one value (leave it out to keep the base value)",
                ));
            }
        }
        for (i, a) in self.activations.iter().flatten().enumerate() {
            a.validate()
                .map_err(|m| invalid(format!("grid.activations[{i}]"), m))?;
        }
        for (i, p) in self.dropout.iter().flatten().enumerate() {
            if !(0.0..1.0).contains(p) {
                return Err(invalid(
                    format!("grid.dropout[{i}]"),
                    format!("must be in [0, 1), got {p}"),
                ));
            }
        }
        for (i, lr) in self.learning_rates.iter().flatten().enumerate() {
            if !(lr.is_finite() && *lr > 0.0 && *lr <= 10.0) {
                return Err(invalid(
                    format!("grid.learning_rates[{i}]"),
                    format!("must be in (0, 10], got {lr}"),
                ));
            }
        }
        Ok(())
    }

    /// Every cell's parameters, the first axis varying slowest.
    #[must_use]
    pub fn cells(&self) -> Vec<CellParams> {
        let mut cells = vec![CellParams::default()];
        fn expand<T: Clone>(
            cells: Vec<CellParams>,
            axis: Option<&Vec<T>>,
            set: impl Fn(&mut CellParams, T),
        ) -> Vec<CellParams> {
            let Some(values) = axis else { return cells };
            let mut out = Vec::with_capacity(cells.len() * values.len());
            for cell in cells {
                for v in values {
                    let mut c = cell.clone();
                    set(&mut c, v.clone());
                    out.push(c);
                }
            }
            out
        }
        cells = expand(cells, self.activations.as_ref(), |c, v| {
            c.activation = Some(v)
        });
        cells = expand(cells, self.inits.as_ref(), |c, v| c.init = Some(v));
        cells = expand(cells, self.hidden_layers.as_ref(), |c, v| {
            c.hidden_layers = Some(v);
        });
        cells = expand(cells, self.dropout.as_ref(), |c, v| c.dropout = Some(v));
        cells = expand(cells, self.batch_norm.as_ref(), |c, v| {
            c.batch_norm = Some(v)
        });
        cells = expand(cells, self.learning_rates.as_ref(), |c, v| {
            c.learning_rate = Some(v);
        });
        cells
    }
}

impl CellParams {
    /// The grid's values of this cell as JSON, by their singular names.
    #[must_use]
    pub fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_owned(), v);
        };
        if let Some(a) = self.activation {
            put("activation", shortest(&a));
        }
        if let Some(i) = self.init {
            put("init", serde_json::to_value(i).unwrap_or(Value::Null));
        }
        if let Some(h) = &self.hidden_layers {
            put("hidden_layers", Value::from(h.clone()));
        }
        if let Some(p) = self.dropout {
            put("dropout", Value::from(p));
        }
        if let Some(b) = self.batch_norm {
            put("batch_norm", Value::from(b));
        }
        if let Some(lr) = self.learning_rate {
            put("learning_rate", shortest(&lr));
        }
        m
    }

    /// `activation=relu, hidden_layers=[32,32]`; an activation with a parameter reads
    /// `leaky_relu(alpha=0.01)`.
    #[must_use]
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = self.activation {
            let name = match a {
                Activation::LeakyRelu { alpha } | Activation::Elu { alpha } => {
                    format!("{}(alpha={alpha})", a.name())
                }
                Activation::Prelu { init } => format!("prelu(init={init})"),
                other => other.name().to_owned(),
            };
            parts.push(format!("activation={name}"));
        }
        if let Some(i) = self.init {
            let name = serde_json::to_value(i)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            parts.push(format!("init={name}"));
        }
        if let Some(h) = &self.hidden_layers {
            let widths: Vec<String> = h.iter().map(ToString::to_string).collect();
            parts.push(format!("hidden_layers=[{}]", widths.join(",")));
        }
        if let Some(p) = self.dropout {
            parts.push(format!("dropout={p}"));
        }
        if let Some(b) = self.batch_norm {
            parts.push(format!("batch_norm={b}"));
        }
        if let Some(lr) = self.learning_rate {
            parts.push(format!("learning_rate={lr}"));
        }
        parts.join(", ")
    }
}

impl ExperimentRequest {
    /// Checks everything that does not need the registry, and expands the grid into cells.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] or [`RegistryError::Limit`] naming the field (and
    /// `--max-experiment-jobs` when cells × seeds exceed it).
    pub fn plan(&self, max_jobs: usize, max_layers: usize) -> Result<Vec<CellPlan>, RegistryError> {
        if let Some(name) = &self.name {
            let ok = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if name.is_empty() || name.len() > MAX_NAME_LEN || !ok {
                return Err(invalid(
                    "name",
                    format!(
                        "must be 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '-', '_', '.'"
                    ),
                ));
            }
        }
        if self.seeds.is_empty() || self.seeds.len() > MAX_SEEDS {
            return Err(invalid(
                "seeds",
                format!("give 1 to {MAX_SEEDS} seeds, got {}", self.seeds.len()),
            ));
        }
        for (i, s) in self.seeds.iter().enumerate() {
            if self.seeds[..i].contains(s) {
                return Err(invalid(
                    format!("seeds[{i}]"),
                    format!("seed {s} is listed twice"),
                ));
            }
        }
        self.grid.check()?;
        let cells = self.grid.cell_count();
        let jobs = cells.saturating_mul(self.seeds.len());
        if jobs > max_jobs {
            return Err(RegistryError::limit(
                "grid",
                Limit::ExperimentJobs,
                max_jobs,
                format!("{cells} cells × {} seeds = {jobs} jobs", self.seeds.len()),
            ));
        }
        if self.training.validation_split.is_nan() || self.training.validation_split <= 0.0 {
            return Err(invalid(
                "training.validation_split",
                format!(
                    "must be above 0: the leaderboard ranks cells by validation metrics, got {}",
                    self.training.validation_split
                ),
            ));
        }
        // Every cell copies the base spec: bound its size (and each `hidden_layers` entry's)
        // before expanding, so that a 1 MiB body cannot ask for 200 copies of a million layers.
        let given = self.model.layers.len();
        if given > max_layers {
            return Err(RegistryError::limit(
                "model.layers",
                Limit::Layers,
                max_layers,
                given,
            ));
        }
        if let Some(list) = &self.model.activations {
            if list.len() > max_layers {
                return Err(RegistryError::limit(
                    "model.activations",
                    Limit::Layers,
                    max_layers,
                    list.len(),
                ));
            }
        }
        for (i, hidden) in self.grid.hidden_layers.iter().flatten().enumerate() {
            if hidden.len().saturating_add(2) > max_layers {
                return Err(RegistryError::limit(
                    format!("grid.hidden_layers[{i}]"),
                    Limit::Layers,
                    max_layers,
                    format!("{} layers with the input and output", hidden.len() + 2),
                ));
            }
        }
        let base = self.base_spec()?;
        Ok(self
            .grid
            .cells()
            .into_iter()
            .map(|p| self.cell(&base, p))
            .collect())
    }

    fn base_spec(&self) -> Result<ModelSpec, RegistryError> {
        let m = &self.model;
        let hidden = m.layers.len().saturating_sub(2);
        let activations = match (m.activation, &m.activations) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "model.activations",
                    "give either `activation` (for every hidden layer) or `activations` (one per hidden layer), not both",
                ))
            }
            (_, Some(list)) => list.clone(),
            (one, None) => vec![one.unwrap_or(Activation::Relu); hidden],
        };
        if !(0.0..1.0).contains(&m.dropout) {
            return Err(invalid(
                "model.dropout",
                format!("must be in [0, 1), got {}", m.dropout),
            ));
        }
        Ok(ModelSpec {
            layers: m.layers.clone(),
            activations,
            output: m.output,
            init: m.init,
            dropout: narrow_dropout(m.dropout),
            batch_norm: m.batch_norm,
        })
    }

    fn cell(&self, base: &ModelSpec, p: CellParams) -> CellPlan {
        let mut spec = base.clone();
        if let Some(h) = &p.hidden_layers {
            let (first, last) = (spec.inputs(), spec.outputs());
            let keep = spec
                .activations
                .first()
                .copied()
                .unwrap_or(Activation::Relu);
            spec.layers = std::iter::once(first)
                .chain(h.iter().copied())
                .chain(std::iter::once(last))
                .collect();
            spec.activations = vec![keep; h.len()];
        }
        if let Some(a) = p.activation {
            spec.activations = vec![a; spec.hidden()];
        }
        if let Some(i) = p.init {
            spec.init = Some(i);
        }
        if let Some(d) = p.dropout {
            spec.dropout = narrow_dropout(d);
        }
        if let Some(b) = p.batch_norm {
            spec.batch_norm = b;
        }
        let mut config = self.training.clone();
        if let Some(lr) = p.learning_rate {
            set_learning_rate(&mut config.optimizer, lr);
        }
        CellPlan {
            label: p.label(),
            params: p.to_map(),
            spec,
            config,
        }
    }
}

/// `value` as JSON with its `f32`s written as they read (`0.1`, not `0.10000000149011612` as
/// `serde_json::to_value` widens them): through the text form, which prints an `f32` shortest.
pub(crate) fn shortest<T: Serialize>(value: &T) -> Value {
    serde_json::to_string(value)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null)
}

/// Below 1 as an f64 may round up to 1 as an f32: keep it below (as `POST /v1/models` does).
fn narrow_dropout(p: f64) -> f32 {
    (p as f32).min(1.0 - f32::EPSILON / 2.0)
}

fn set_learning_rate(optimizer: &mut OptimizerConfig, lr: f32) {
    match optimizer {
        OptimizerConfig::Sgd { learning_rate, .. }
        | OptimizerConfig::Adam { learning_rate, .. }
        | OptimizerConfig::AdamW { learning_rate, .. }
        | OptimizerConfig::Rmsprop { learning_rate, .. } => *learning_rate = lr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(grid: Value, seeds: Value) -> ExperimentRequest {
        serde_json::from_value(serde_json::json!({
            "model": {"layers": [2, 8, 8, 2], "activation": "tanh", "output": "softmax"},
            "training": {"epochs": 3},
            "grid": grid, "seeds": seeds,
        }))
        .expect("parses")
    }

    #[test]
    fn cells_are_the_cartesian_product_in_axis_order() {
        let r = request(
            serde_json::json!({
                "learning_rates": [0.1, 0.01],
                "activations": ["relu", {"name": "leaky_relu", "alpha": 0.1}],
                "hidden_layers": [[4], [4, 4, 4]],
            }),
            serde_json::json!([1, 2]),
        );
        let cells = r.plan(200, 64).expect("valid");
        assert_eq!(cells.len(), 8);
        let labels: Vec<&str> = cells.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels[0],
            "activation=relu, hidden_layers=[4], learning_rate=0.1"
        );
        assert_eq!(
            labels[7],
            "activation=leaky_relu(alpha=0.1), hidden_layers=[4,4,4], learning_rate=0.01"
        );
        assert_eq!(cells[3].spec.layers, vec![2, 4, 4, 4, 2]);
        assert_eq!(cells[3].spec.activations, vec![Activation::Relu; 3]);
        assert_eq!(cells[3].config.optimizer.learning_rate(), 0.01);
        assert_eq!(cells[0].spec.init, None, "the activation's default init");
        assert_eq!(
            cells[0].params.keys().collect::<Vec<_>>(),
            ["activation", "hidden_layers", "learning_rate"]
        );
    }

    #[test]
    fn empty_grids_axes_and_oversized_grids_are_named() {
        let e = request(serde_json::json!({}), serde_json::json!([1])).plan(200, 64);
        assert!(matches!(e, Err(RegistryError::Invalid { ref field, .. }) if field == "grid"));
        let e = request(serde_json::json!({"inits": []}), serde_json::json!([1])).plan(200, 64);
        assert!(
            matches!(e, Err(RegistryError::Invalid { ref field, .. }) if field == "grid.inits")
        );
        let e = request(
            serde_json::json!({"dropout": [0.0, 0.1, 0.2]}),
            serde_json::json!([1, 2, 3]),
        )
        .plan(8, 64);
        assert!(matches!(
            e,
            Err(RegistryError::Limit {
                limit: Limit::ExperimentJobs,
                ..
            })
        ));
        let e = request(
            serde_json::json!({"dropout": [0.0]}),
            serde_json::json!([1, 1]),
        )
        .plan(8, 64);
        assert!(matches!(e, Err(RegistryError::Invalid { ref field, .. }) if field == "seeds[1]"));
    }
}
