//! The plots of one job, from its epoch records.

use serde::Deserialize;

use super::lines::{line_chart, Labels, Line, YScale};
use crate::nn::train::LayerDiagnostics;
use crate::nn::EpochRecord;

/// What a job plot shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPlotKind {
    /// Training and validation loss.
    Loss,
    /// Training and validation accuracy (R² for regression).
    Accuracy,
    /// The generalization gap, validation loss − training loss.
    Gap,
    /// Each layer's mean gradient norm, on a log axis.
    GradNorms,
    /// Each layer's dead and saturated unit fractions.
    Units,
}

impl JobPlotKind {
    /// Every kind, as named in a query.
    pub const NAMES: &'static [&'static str] = &["loss", "accuracy", "gap", "grad_norms", "units"];

    /// Its name in a query.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::Accuracy => "accuracy",
            Self::Gap => "gap",
            Self::GradNorms => "grad_norms",
            Self::Units => "units",
        }
    }
}

/// The plot `kind` of the epoch records `history`, titled `title`. Returns an SVG document.
#[must_use]
pub fn job_plot(kind: JobPlotKind, title: &str, history: &[EpochRecord]) -> String {
    let curve = |label: &str, f: &dyn Fn(&EpochRecord) -> Option<f64>| Line {
        label: label.to_owned(),
        points: history
            .iter()
            .filter_map(|r| Some((r.epoch as f64, f(r)?)))
            .collect(),
        band: Vec::new(),
    };
    let labels = |y| Labels {
        title,
        x: "epoch",
        y,
    };
    match kind {
        JobPlotKind::Loss => line_chart(
            labels("loss"),
            &[
                curve("train loss", &|r| Some(r.train_loss)),
                curve("validation loss", &|r| r.val_loss),
            ],
            YScale::Linear,
        ),
        JobPlotKind::Accuracy if history.iter().any(|r| r.train_r2.is_some()) => line_chart(
            labels("R²"),
            &[
                curve("train R²", &|r| r.train_r2),
                curve("validation R²", &|r| r.val_r2),
            ],
            YScale::Linear,
        ),
        JobPlotKind::Accuracy => line_chart(
            labels("accuracy"),
            &[
                curve("train accuracy", &|r| r.train_accuracy),
                curve("validation accuracy", &|r| r.val_accuracy),
            ],
            YScale::Fixed(-0.02, 1.02),
        ),
        JobPlotKind::Gap => line_chart(
            labels("validation loss − train loss"),
            &[curve("generalization gap", &|r| r.generalization_gap)],
            YScale::Linear,
        ),
        JobPlotKind::GradNorms => {
            let lines = per_layer(history, |l| l.grad_norm, "")
                .into_iter()
                .map(|(label, f)| curve(&label, &*f))
                .collect::<Vec<_>>();
            line_chart(labels("mean gradient L2 norm ‖∂L/∂W‖"), &lines, YScale::Log)
        }
        JobPlotKind::Units => {
            let mut lines: Vec<Line> = per_layer(history, |l| l.dead_fraction, " dead")
                .into_iter()
                .chain(per_layer(history, |l| l.saturated_fraction, " saturated"))
                .map(|(label, f)| curve(&label, &*f))
                .collect();
            if lines.is_empty() {
                lines.push(Line {
                    label: "no layer reports dead or saturated units".into(),
                    ..Line::default()
                });
            }
            line_chart(
                labels("fraction of units"),
                &lines,
                YScale::Fixed(-0.02, 1.02),
            )
        }
    }
}

/// A value of an epoch record, if it has one.
type Value = Box<dyn Fn(&EpochRecord) -> Option<f64>>;
/// A curve's label and its value per epoch record.
type LayerCurve = (String, Value);

/// One curve per layer for which some record has `value`, labelled "layer 0 (relu)" or
/// "output layer", followed by `suffix`.
fn per_layer(
    history: &[EpochRecord],
    value: fn(&LayerDiagnostics) -> Option<f64>,
    suffix: &str,
) -> Vec<LayerCurve> {
    let Some(last) = history.last() else {
        return Vec::new();
    };
    let outputs = last.layers.len().saturating_sub(1);
    last.layers
        .iter()
        .filter(|l| {
            history
                .iter()
                .any(|r| r.layers.get(l.layer).and_then(value).is_some())
        })
        .map(|l| {
            let label = if l.layer == outputs {
                format!("output layer{suffix}")
            } else {
                format!("layer {} ({}){suffix}", l.layer, l.activation)
            };
            let index = l.layer;
            let f: Value = Box::new(move |r| r.layers.get(index).and_then(value));
            (label, f)
        })
        .collect()
}
