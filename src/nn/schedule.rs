//! Learning-rate schedules, applied once per epoch.
//!
//! `lr(e)` is the rate used during epoch `e` (1-based), from the optimizer's base rate `lr₀`:
//!
//! | kind | `lr(e)` |
//! |---|---|
//! | `constant` | `lr₀` |
//! | `step` | `lr₀ · gamma^⌊(e−1)/step_size⌋` |
//! | `exponential` | `lr₀ · gamma^(e−1)` |
//! | `cosine` | `min_lr + (lr₀ − min_lr)·(1 + cos(π·(e−1)/t_max))/2`, `t_max` defaulting to the epochs |
//! | `reduce_on_plateau` | multiplied by `factor` when the monitored loss has not improved by `min_delta` for `patience` epochs, never below `min_lr` |

use serde::{Deserialize, Serialize};

use super::error::{NnError, Result};

/// A learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        /// Epochs between decays.
        step_size: usize,
        /// Decay factor (default 0.1).
        #[serde(default = "gamma_step")]
        gamma: f64,
    },
    /// Multiply by `gamma` every epoch.
    Exponential {
        /// Decay factor per epoch.
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_lr` over `t_max` epochs.
    Cosine {
        /// Length of the half cosine (default: all epochs).
        #[serde(default)]
        t_max: Option<usize>,
        /// Final rate (default 0).
        #[serde(default)]
        min_lr: f64,
    },
    /// Cut the rate when the validation loss (training loss without validation) stalls.
    ReduceOnPlateau {
        /// Multiplier on a plateau (default 0.1).
        #[serde(default = "gamma_step")]
        factor: f64,
        /// Epochs without improvement before a cut (default 10).
        #[serde(default = "plateau_patience")]
        patience: usize,
        /// Smallest improvement that counts (default 1e-4).
        #[serde(default = "plateau_delta")]
        min_delta: f64,
        /// Floor (default 0).
        #[serde(default)]
        min_lr: f64,
    },
}

fn gamma_step() -> f64 {
    0.1
}
fn plateau_patience() -> usize {
    10
}
fn plateau_delta() -> f64 {
    1e-4
}

impl Schedule {
    /// Checks parameter ranges, naming fields as `lr_schedule.<name>`.
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x >= 0)` also refuses NaN
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: String| Err(NnError::invalid(format!("lr_schedule.{f}"), m));
        match *self {
            Schedule::Step { step_size: 0, .. } => bad("step_size", "must be at least 1".into()),
            Schedule::Step { gamma, .. } | Schedule::Exponential { gamma }
                if !(gamma > 0.0 && gamma <= 1.0) =>
            {
                bad("gamma", format!("must be in (0, 1], got {gamma}"))
            }
            Schedule::Cosine { t_max: Some(0), .. } => bad("t_max", "must be at least 1".into()),
            Schedule::Cosine { min_lr, .. } | Schedule::ReduceOnPlateau { min_lr, .. }
                if !(min_lr >= 0.0 && min_lr.is_finite()) =>
            {
                bad("min_lr", format!("must be ≥ 0, got {min_lr}"))
            }
            Schedule::ReduceOnPlateau { factor, .. } if !(factor > 0.0 && factor < 1.0) => {
                bad("factor", format!("must be in (0, 1), got {factor}"))
            }
            Schedule::ReduceOnPlateau { min_delta, .. } if !(min_delta >= 0.0) => {
                bad("min_delta", format!("must be ≥ 0, got {min_delta}"))
            }
            _ => Ok(()),
        }
    }
}

/// A schedule in use: the current rate and, for plateaus, what it has seen.
#[derive(Clone, Debug)]
pub struct Scheduler {
    schedule: Schedule,
    base: f64,
    epochs: usize,
    current: f64,
    best: f64,
    bad_epochs: usize,
}

impl Scheduler {
    /// Starts `schedule` at `base` for a run of `epochs`.
    pub fn new(schedule: Schedule, base: f64, epochs: usize) -> Self {
        Self {
            schedule,
            base,
            epochs,
            current: base,
            best: f64::INFINITY,
            bad_epochs: 0,
        }
    }

    /// The rate for epoch `epoch` (1-based).
    pub fn rate(&mut self, epoch: usize) -> f64 {
        let e = epoch.saturating_sub(1) as f64;
        self.current = match self.schedule {
            Schedule::Constant => self.base,
            Schedule::Step { step_size, gamma } => {
                self.base * gamma.powi(((epoch.saturating_sub(1)) / step_size) as i32)
            }
            Schedule::Exponential { gamma } => self.base * gamma.powf(e),
            Schedule::Cosine { t_max, min_lr } => {
                let t = t_max.unwrap_or(self.epochs).max(1) as f64;
                let progress = (e / t).min(1.0);
                min_lr
                    + (self.base - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
            }
            Schedule::ReduceOnPlateau { .. } => self.current,
        };
        self.current
    }

    /// Tells a plateau schedule the epoch's monitored loss; other schedules ignore it.
    pub fn observe(&mut self, loss: f64) {
        if let Schedule::ReduceOnPlateau {
            factor,
            patience,
            min_delta,
            min_lr,
        } = self.schedule
        {
            if loss < self.best - min_delta {
                self.best = loss;
                self.bad_epochs = 0;
            } else {
                self.bad_epochs += 1;
                if self.bad_epochs > patience {
                    self.current = (self.current * factor).max(min_lr);
                    self.bad_epochs = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(s: Schedule, n: usize) -> Vec<f64> {
        let mut sch = Scheduler::new(s, 1.0, n);
        (1..=n).map(|e| sch.rate(e)).collect()
    }

    #[test]
    fn closed_form_schedules_follow_their_formulas() {
        assert_eq!(rates(Schedule::Constant, 3), vec![1.0; 3]);
        assert_eq!(
            rates(
                Schedule::Step {
                    step_size: 2,
                    gamma: 0.5
                },
                5
            ),
            vec![1.0, 1.0, 0.5, 0.5, 0.25]
        );
        let exp = rates(Schedule::Exponential { gamma: 0.5 }, 3);
        assert_eq!(exp, vec![1.0, 0.5, 0.25]);
        let cos = rates(
            Schedule::Cosine {
                t_max: Some(2),
                min_lr: 0.0,
            },
            3,
        );
        assert!(
            (cos[0] - 1.0).abs() < 1e-12 && (cos[1] - 0.5).abs() < 1e-12 && cos[2].abs() < 1e-12
        );
    }

    #[test]
    fn plateau_cuts_the_rate_after_patience_epochs_without_improvement() {
        let s = Schedule::ReduceOnPlateau {
            factor: 0.5,
            patience: 1,
            min_delta: 0.0,
            min_lr: 0.1,
        };
        let mut sch = Scheduler::new(s, 1.0, 10);
        let mut seen = Vec::new();
        for (e, loss) in [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
            .into_iter()
            .enumerate()
        {
            seen.push(sch.rate(e + 1));
            sch.observe(loss);
        }
        assert_eq!(seen, vec![1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
        for _ in 0..20 {
            sch.observe(0.9);
        }
        assert_eq!(sch.rate(30), 0.1);
    }

    #[test]
    fn bad_parameters_are_named() {
        let err = Schedule::Step {
            step_size: 0,
            gamma: 0.1,
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("lr_schedule.step_size"));
        assert!(Schedule::Exponential { gamma: 1.5 }.validate().is_err());
    }
}
