//! The leaderboard: per cell, the mean ± sample std over seeds of what each succeeded run's
//! history says, sorted by a chosen metric, and the best cell compared with each other one,
//! paired by seed.

use serde::Serialize;

use super::stats::{mean, paired_t_test, sample_std, wilcoxon_exact};
use crate::nn::{EpochRecord, ModelSpec};
use crate::registry::RegistryError;

/// A metric the leaderboard can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Lowest validation loss of a run.
    BestValLoss,
    /// Validation accuracy at the best epoch (classification).
    ValAccuracy,
    /// Validation R² at the best epoch (regression).
    ValR2,
    /// `val_loss − train_loss` of the last epoch.
    FinalGap,
    /// The epoch of the lowest validation loss.
    EpochsToBest,
    /// First-layer over last-layer gradient norm at epoch 1.
    GradRatioFirst,
    /// The same at the last epoch.
    GradRatioFinal,
    /// Dead ReLU-family hidden units at the last epoch.
    DeadFraction,
    /// Saturated sigmoid/tanh hidden units at the last epoch.
    SaturatedFraction,
}

impl Metric {
    /// Every metric, in the order rows show them.
    pub const ALL: [Metric; 9] = [
        Metric::BestValLoss,
        Metric::ValAccuracy,
        Metric::ValR2,
        Metric::FinalGap,
        Metric::EpochsToBest,
        Metric::GradRatioFirst,
        Metric::GradRatioFinal,
        Metric::DeadFraction,
        Metric::SaturatedFraction,
    ];

    /// The name in JSON and in `?sort=`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Metric::BestValLoss => "best_val_loss",
            Metric::ValAccuracy => "val_accuracy",
            Metric::ValR2 => "val_r2",
            Metric::FinalGap => "final_gap",
            Metric::EpochsToBest => "epochs_to_best",
            Metric::GradRatioFirst => "grad_ratio_first",
            Metric::GradRatioFinal => "grad_ratio_final",
            Metric::DeadFraction => "dead_fraction",
            Metric::SaturatedFraction => "saturated_fraction",
        }
    }

    /// The metric named `name`.
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] on `sort`, listing the names.
    pub fn parse(name: &str) -> Result<Self, RegistryError> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
                RegistryError::invalid(
                    "sort",
                    format!(
                        "unknown metric `{name}`; expected one of {}",
                        names.join(", ")
                    ),
                )
            })
    }

    /// Whether higher is better (accuracy, R²): those sort descending by default.
    #[must_use]
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::ValAccuracy | Metric::ValR2)
    }
}

/// Ascending or descending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

impl Order {
    /// The order named `name` (`asc` or `desc`).
    ///
    /// # Errors
    /// [`RegistryError::Invalid`] on `order`.
    pub fn parse(name: &str) -> Result<Self, RegistryError> {
        match name {
            "asc" => Ok(Order::Asc),
            "desc" => Ok(Order::Desc),
            other => Err(RegistryError::invalid(
                "order",
                format!("unknown order `{other}`; expected asc or desc"),
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// Mean, sample std and the per-seed values of one metric of one cell.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Over the values present; `null` when none is.
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1); `null` for fewer than two values.
    pub std: Option<f64>,
    /// Per seed, in the experiment's seed order; `null` where the run did not succeed or the
    /// metric does not apply.
    pub values: Vec<Option<f64>>,
}

impl Summary {
    fn of(values: Vec<Option<f64>>) -> Self {
        let present: Vec<f64> = values.iter().flatten().copied().collect();
        Self {
            mean: mean(&present),
            std: sample_std(&present),
            values,
        }
    }
}

/// One row: a cell's summaries.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// The cell's index.
    pub cell: usize,
    /// The cell's label.
    pub label: String,
    /// Runs of the cell (one per seed).
    pub runs: usize,
    /// Runs that succeeded (only those have values).
    pub succeeded: usize,
    /// Lowest validation loss.
    pub best_val_loss: Summary,
    /// Validation accuracy at the best epoch (not for regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<Summary>,
    /// Validation R² at the best epoch (regression only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_r2: Option<Summary>,
    /// `val_loss − train_loss` at the last epoch.
    pub final_gap: Summary,
    /// Epoch of the lowest validation loss.
    pub epochs_to_best: Summary,
    /// `layers[0].grad_norm / layers[last].grad_norm` at epoch 1.
    pub grad_ratio_first: Summary,
    /// The same at the last epoch.
    pub grad_ratio_final: Summary,
    /// Dead fraction over every hidden unit of ReLU-family layers, last epoch.
    pub dead_fraction: Summary,
    /// Saturated fraction over every hidden unit of sigmoid/tanh layers, last epoch.
    pub saturated_fraction: Summary,
}

impl Row {
    /// The summary of `metric` (an absent accuracy or R² reads as no values).
    #[must_use]
    pub fn metric(&self, metric: Metric) -> Option<&Summary> {
        match metric {
            Metric::BestValLoss => Some(&self.best_val_loss),
            Metric::ValAccuracy => self.val_accuracy.as_ref(),
            Metric::ValR2 => self.val_r2.as_ref(),
            Metric::FinalGap => Some(&self.final_gap),
            Metric::EpochsToBest => Some(&self.epochs_to_best),
            Metric::GradRatioFirst => Some(&self.grad_ratio_first),
            Metric::GradRatioFinal => Some(&self.grad_ratio_final),
            Metric::DeadFraction => Some(&self.dead_fraction),
            Metric::SaturatedFraction => Some(&self.saturated_fraction),
        }
    }
}

/// The Wilcoxon half of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WilcoxonView {
    /// `Wilcoxon signed-rank (exact, two-sided)`.
    pub test: &'static str,
    /// `min(W+, W−)`.
    pub statistic: Option<f64>,
    /// Two-sided exact p-value; `null` when undefined (see `note`).
    pub p_value: Option<f64>,
    /// Non-zero differences ranked.
    pub n: usize,
    /// Why there is no p-value, or how ties and zeros were treated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The best cell against another, paired by seed on the sort metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The best cell (the first row).
    pub best: usize,
    /// The other cell.
    pub other: usize,
    /// The metric compared.
    pub metric: &'static str,
    /// Seeds where both runs have a value.
    pub n: usize,
    /// Mean of best − other over those seeds.
    pub mean_difference: Option<f64>,
    /// `paired t-test (two-sided)`.
    pub test: &'static str,
    /// The t statistic.
    pub statistic: Option<f64>,
    /// Degrees of freedom, n − 1.
    pub df: Option<usize>,
    /// Two-sided p-value; `null` when the test is undefined (see `note`).
    pub p_value: Option<f64>,
    /// Why there is no p-value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The same pairs under the exact Wilcoxon signed-rank test.
    pub wilcoxon: WilcoxonView,
}

/// The leaderboard of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Leaderboard {
    /// The metric rows are sorted by.
    pub sort: &'static str,
    /// `asc` or `desc`.
    pub order: &'static str,
    /// One per cell, sorted; cells without a value of the metric last.
    pub rows: Vec<Row>,
    /// The first row against each other row.
    pub comparisons: Vec<Comparison>,
}

/// What a cell is and how its runs went: per seed, the metrics of a succeeded run.
#[derive(Debug)]
pub struct CellRuns<'a> {
    /// The cell's index.
    pub index: usize,
    /// The cell's label.
    pub label: &'a str,
    /// Per seed (in order), the metrics of the run when it succeeded.
    pub runs: Vec<Option<RunMetrics>>,
}

/// Every leaderboard metric of one run, in [`Metric::ALL`] order: what a row needs of a
/// history, so that a view reads each history once, in place, and keeps nine numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunMetrics([Option<f64>; 9]);

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// The epoch with the lowest validation loss (ties: the earliest), among trained epochs
/// (epoch 0 describes the untrained model) when there are any.
fn best_epoch(history: &[EpochRecord]) -> Option<&EpochRecord> {
    let trained = history.iter().any(|r| r.epoch >= 1);
    history
        .iter()
        .filter(|r| !trained || r.epoch >= 1)
        .filter(|r| r.val_loss.is_some_and(f64::is_finite))
        .min_by(|a, b| {
            a.val_loss
                .unwrap_or(f64::INFINITY)
                .total_cmp(&b.val_loss.unwrap_or(f64::INFINITY))
        })
}

fn grad_ratio(record: &EpochRecord) -> Option<f64> {
    let first = record.layers.first()?.grad_norm?;
    let last = record.layers.last()?.grad_norm?;
    finite(first / last)
}

/// A unit-weighted fraction over the hidden layers for which `of` has a value.
fn hidden_fraction(
    record: &EpochRecord,
    spec: &ModelSpec,
    of: impl Fn(&crate::nn::train::LayerDiagnostics) -> Option<f64>,
) -> Option<f64> {
    let (mut units, mut weighted) = (0usize, 0.0);
    for d in record.layers.iter().filter(|d| d.layer < spec.hidden()) {
        if let Some(f) = of(d) {
            let width = spec.layers.get(d.layer + 1).copied().unwrap_or(0);
            units += width;
            weighted += f * width as f64;
        }
    }
    (units > 0)
        .then(|| weighted / units as f64)
        .and_then(finite)
}

impl RunMetrics {
    /// The metrics of the run whose history is `history`, of a model `spec`.
    #[must_use]
    pub fn of(history: &[EpochRecord], spec: &ModelSpec) -> Self {
        let best = best_epoch(history);
        let last = history.last();
        let first = history.iter().find(|r| r.epoch == 1);
        Self([
            best.and_then(|r| r.val_loss),
            best.and_then(|r| r.val_accuracy),
            best.and_then(|r| r.val_r2),
            last.and_then(|r| r.generalization_gap).and_then(finite),
            best.map(|r| r.epoch as f64),
            first.and_then(grad_ratio),
            last.and_then(grad_ratio),
            last.and_then(|r| hidden_fraction(r, spec, |d| d.dead_fraction)),
            last.and_then(|r| hidden_fraction(r, spec, |d| d.saturated_fraction)),
        ])
    }
}

fn row(cell: &CellRuns<'_>, regression: bool) -> Row {
    let per_run = &cell.runs;
    let column = |i: usize| Summary::of(per_run.iter().map(|r| r.and_then(|m| m.0[i])).collect());
    Row {
        cell: cell.index,
        label: cell.label.to_owned(),
        runs: per_run.len(),
        succeeded: per_run.iter().filter(|r| r.is_some()).count(),
        best_val_loss: column(0),
        val_accuracy: (!regression).then(|| column(1)),
        val_r2: regression.then(|| column(2)),
        final_gap: column(3),
        epochs_to_best: column(4),
        grad_ratio_first: column(5),
        grad_ratio_final: column(6),
        dead_fraction: column(7),
        saturated_fraction: column(8),
    }
}

fn compare(best: &Row, other: &Row, metric: Metric) -> Comparison {
    let empty = Vec::new();
    let values = |r: &Row| r.metric(metric).map_or(&empty, |s| &s.values).clone();
    let (a, b): (Vec<f64>, Vec<f64>) = values(best)
        .iter()
        .zip(values(other).iter())
        .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
        .unzip();
    let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    let t = paired_t_test(&a, &b);
    let w = if a.len() < 2 {
        Err(format!(
            "{} paired runs; the test needs at least 2",
            a.len()
        ))
    } else {
        wilcoxon_exact(&a, &b)
    };
    let wilcoxon = match w {
        Ok(w) => WilcoxonView {
            test: "Wilcoxon signed-rank (exact, two-sided)",
            statistic: Some(w.statistic),
            p_value: Some(w.p_value),
            n: w.n,
            note: match (w.ties, w.zeros) {
                (false, 0) => None,
                (ties, zeros) => Some(format!(
                    "{zeros} zero difference(s) dropped{}",
                    if ties {
                        "; tied |differences| get average ranks and the exact distribution is conditional on them"
                    } else {
                        ""
                    }
                )),
            },
        },
        Err(note) => WilcoxonView {
            test: "Wilcoxon signed-rank (exact, two-sided)",
            statistic: None,
            p_value: None,
            n: d.iter().filter(|v| **v != 0.0).count(),
            note: Some(note),
        },
    };
    let (statistic, df, p_value, note) = match t {
        Ok(t) => (Some(t.statistic), Some(t.df), Some(t.p_value), None),
        Err(note) => (None, None, None, Some(note)),
    };
    Comparison {
        best: best.cell,
        other: other.cell,
        metric: metric.name(),
        n: a.len(),
        mean_difference: mean(&d),
        test: "paired t-test (two-sided)",
        statistic,
        df,
        p_value,
        note,
        wilcoxon,
    }
}

/// The leaderboard of `cells`, sorted by `metric` in `order` (default: the metric's own).
#[must_use]
pub fn leaderboard(
    cells: &[CellRuns<'_>],
    regression: bool,
    metric: Metric,
    order: Option<Order>,
) -> Leaderboard {
    let order = order.unwrap_or(if metric.higher_is_better() {
        Order::Desc
    } else {
        Order::Asc
    });
    let mut rows: Vec<Row> = cells.iter().map(|c| row(c, regression)).collect();
    let key = |r: &Row| r.metric(metric).and_then(|s| s.mean);
    rows.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => {
            let o = x.total_cmp(&y);
            if order == Order::Desc {
                o.reverse()
            } else {
                o
            }
        }
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let comparisons = match rows.split_first() {
        Some((best, others)) if key(best).is_some() => {
            others.iter().map(|o| compare(best, o, metric)).collect()
        }
        _ => Vec::new(),
    };
    Leaderboard {
        sort: metric.name(),
        order: order.name(),
        rows,
        comparisons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::train::LayerDiagnostics;
    use crate::nn::{Activation, Head};

    fn layer(layer: usize, grad: f64, dead: Option<f64>, sat: Option<f64>) -> LayerDiagnostics {
        LayerDiagnostics {
            layer,
            activation: "".into(),
            grad_norm: Some(grad),
            weight_norm: 1.0,
            update_ratio: None,
            saturated_fraction: sat,
            dead_fraction: dead,
            prelu_slope_mean: None,
        }
    }

    fn epoch(epoch: usize, train: f64, val: f64, acc: f64, grads: [f64; 3]) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: train,
            val_loss: Some(val),
            train_accuracy: None,
            val_accuracy: Some(acc),
            train_r2: None,
            val_r2: None,
            train_mae: None,
            val_mae: None,
            generalization_gap: Some(val - train),
            learning_rate: 0.01,
            seconds: 0.0,
            layers: vec![
                layer(0, grads[0], Some(0.5), None),
                layer(1, grads[1], Some(0.0), None),
                layer(2, grads[2], None, None),
            ],
        }
    }

    #[test]
    fn run_metrics_read_the_best_and_last_epochs() {
        // Hidden widths 2 and 6: dead 0.5 of 2 units and 0 of 6 → 1/8 of all hidden units.
        let spec = ModelSpec::new(&[3, 2, 6, 2], Activation::Relu, Head::Softmax);
        let h = vec![
            epoch(0, 1.0, 1.0, 0.3, [1.0, 1.0, 1.0]),
            epoch(1, 0.8, 0.7, 0.6, [0.2, 1.0, 4.0]),
            epoch(2, 0.5, 0.5, 0.8, [0.3, 1.0, 2.0]),
            epoch(3, 0.3, 0.6, 0.7, [0.5, 1.0, 1.0]),
        ];
        let RunMetrics(m) = RunMetrics::of(&h, &spec);
        assert_eq!(m[0], Some(0.5));
        assert_eq!(m[1], Some(0.8));
        assert_eq!(m[2], None);
        assert!((m[3].unwrap() - 0.3).abs() < 1e-12, "gap of the last epoch");
        assert_eq!(m[4], Some(2.0));
        assert_eq!(m[5], Some(0.05));
        assert_eq!(m[6], Some(0.5));
        assert_eq!(m[7], Some(0.125));
        assert_eq!(m[8], None);
    }

    #[test]
    fn rows_sort_by_the_metric_and_the_best_is_compared_with_the_rest() {
        let spec = ModelSpec::new(&[3, 2, 6, 2], Activation::Relu, Head::Softmax);
        let run = |val: f64| {
            Some(RunMetrics::of(
                &[epoch(1, 0.1, val, 0.5, [1.0, 1.0, 1.0])],
                &spec,
            ))
        };
        let cells = [
            CellRuns {
                index: 0,
                label: "a",
                runs: vec![run(0.5), run(0.6), None],
            },
            CellRuns {
                index: 1,
                label: "b",
                runs: vec![run(0.2), run(0.4), run(0.3)],
            },
        ];
        let board = leaderboard(&cells, false, Metric::BestValLoss, None);
        assert_eq!((board.sort, board.order), ("best_val_loss", "asc"));
        assert_eq!(board.rows[0].cell, 1);
        assert_eq!(
            board.rows[1].best_val_loss.values,
            vec![Some(0.5), Some(0.6), None]
        );
        assert_eq!(board.rows[1].succeeded, 2);
        let c = &board.comparisons[0];
        assert_eq!((c.best, c.other, c.n), (1, 0, 2));
        // Seeds 1 and 2 pair (cell 0 has no third run): differences −0.3 and −0.2.
        assert!((c.mean_difference.unwrap() - (-0.25)).abs() < 1e-12);
        assert_eq!(c.df, Some(1));
        assert!(c.p_value.is_some());
        let desc = leaderboard(&cells, false, Metric::BestValLoss, Some(Order::Desc));
        assert_eq!(desc.rows[0].cell, 0);
    }
}
