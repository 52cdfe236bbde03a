//! What a job is, as clients see it and as it is stored: its state, progress, result or error.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::nn::{EpochRecord, FitSummary, TrainConfig};

/// Where a job is in its life: `queued → running → succeeded | failed | cancelled`, and
/// `interrupted` for one that was queued or running when the process stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a free slot.
    Queued,
    /// Training.
    Running,
    /// Finished; a new version exists.
    Succeeded,
    /// Finished without a version; `error` says why.
    Failed,
    /// Stopped by a client.
    Cancelled,
    /// Queued or running when the process stopped or shut down.
    Interrupted,
}

impl JobState {
    /// Every state, for error messages and listings.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Interrupted,
    ];

    /// Whether the job will not change any more.
    #[must_use]
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }

    /// The name as in JSON.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }
}

/// How far a job has come.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs done (0 before the first).
    pub epoch: usize,
    /// Epochs asked for.
    pub epochs: usize,
    /// `epoch / epochs`.
    pub fraction: f64,
    /// Training rows per second over the last epoch.
    pub samples_per_second: Option<f64>,
    /// Seconds left at the mean pace so far.
    pub eta_seconds: Option<f64>,
}

/// What a succeeded job produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The new version of the model.
    pub version: u32,
    /// How the fit ended: the version's own summary, flattened beside `version`.
    #[serde(flatten)]
    pub fit: FitSummary,
}

impl JobResult {
    /// What the job that made version `i` produced.
    #[must_use]
    pub fn of(i: &crate::registry::VersionInfo) -> Self {
        Self {
            version: i.version,
            fit: i.fit,
        }
    }
}

/// Why a job failed or was interrupted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobFailure {
    /// What happened.
    pub message: String,
    /// The epoch it happened in, when known.
    pub epoch: Option<usize>,
    /// What usually helps.
    pub hint: Option<String>,
}

/// Start training from the weights of an existing version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmStart {
    /// The version of the same model.
    pub version: u32,
}

/// A job as clients see it (the epoch history is served apart).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// UUIDv7.
    pub id: Uuid,
    /// The model trained.
    pub model: Uuid,
    /// Its name.
    pub model_name: String,
    /// The dataset trained on.
    pub dataset: Uuid,
    /// Where the job is.
    pub state: JobState,
    /// RFC 3339.
    pub created_at: String,
    /// When it began running.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
    /// The training configuration, defaults filled in.
    pub request: TrainConfig,
    /// The version it started from.
    pub warm_start: Option<WarmStart>,
    /// How far it has come.
    pub progress: Progress,
    /// The latest epoch record.
    pub latest: Option<EpochRecord>,
    /// On success.
    pub result: Option<JobResult>,
    /// On failure, cancellation or interruption.
    pub error: Option<JobFailure>,
    /// The job this one retries (`POST /v1/jobs/{id}/retry`).
    #[serde(default)]
    pub retry_of: Option<Uuid>,
    /// The replica that runs or ran it (`--replica-name`); `None` while queued, or for a job
    /// that never ran.
    #[serde(default)]
    pub worker: Option<String>,
}

/// A job as stored: the record and its whole history.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredJob {
    pub record: JobRecord,
    pub history: Vec<EpochRecord>,
}

/// What live subscribers receive.
#[derive(Clone, Debug)]
pub enum JobEvent {
    /// One more epoch record.
    Epoch(std::sync::Arc<EpochRecord>),
    /// The job's state changed; the record after the change.
    Status(std::sync::Arc<JobRecord>),
    /// Epochs were added to the history at once, more than the ring of live events should
    /// carry (another replica's progress, read from the store a second's worth at a time):
    /// subscribers read them from the history, up to this length of it, then go on with the
    /// live events.
    Appended(usize),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_job_result_keeps_the_fields_it_had_before_the_fit_summary() {
        // The old layout, in its field order.
        let old = json!({
            "version": 2,
            "best_epoch": 40,
            "stopped_early": false,
            "epochs_run": 40,
            "train": {"loss": 0.015_625, "r2": 0.987_654_321_012_345_6, "mae": 0.1},
            "validation": null,
            "test": {"loss": 0.25, "r2": 0.5, "mae": 0.375}
        });

        let result: JobResult = serde_json::from_str(&old.to_string()).expect("reads");

        assert_eq!(result.version, 2);
        assert_eq!(result.fit.epochs_run, 40);
        assert_eq!(result.fit.train.r2, Some(0.987_654_321_012_345_6));
        assert_eq!(serde_json::to_value(&result).expect("writes"), old);
    }
}
