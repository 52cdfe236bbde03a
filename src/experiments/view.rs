//! What the API shows of an experiment: its view with cells and leaderboard, and the
//! summary the listing gives.

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{BaseModel, Grid, Leaderboard};
use crate::nn::Task;

/// Where its jobs are.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ExperimentProgress {
    /// Jobs in all.
    pub total: usize,
    /// Finished jobs (succeeded, failed, cancelled or interrupted).
    pub done: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
    /// Cancelled.
    pub cancelled: usize,
    /// Interrupted by a restart.
    pub interrupted: usize,
    /// Training.
    pub running: usize,
    /// Waiting.
    pub queued: usize,
    /// `done / total`.
    pub fraction: f64,
}

/// One run as shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunView {
    /// The seed.
    pub seed: u64,
    /// Its job.
    pub job: Uuid,
    /// Its job's state (`unavailable` when its record cannot be loaded).
    pub state: &'static str,
}

/// One cell as shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellView {
    /// 0, 1, … in grid order.
    pub index: usize,
    /// `activation=relu, hidden_layers=[32,32]`.
    pub label: String,
    /// The grid's values of this cell.
    pub params: Map<String, Value>,
    /// Its model.
    pub model: Uuid,
    /// Its model's name.
    pub model_name: String,
    /// One per seed.
    pub jobs: Vec<RunView>,
}

/// An experiment as `GET /v1/experiments/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExperimentView {
    /// UUIDv7.
    pub id: Uuid,
    /// The client's name, if any.
    pub name: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The dataset.
    pub dataset: Uuid,
    /// The task of the dataset.
    pub task: Task,
    /// `running`, `finished` or `cancelled`.
    pub state: &'static str,
    /// Job counts.
    pub progress: ExperimentProgress,
    /// The axes as given.
    pub grid: Grid,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// The base model.
    pub model: BaseModel,
    /// The base training, without `seed`.
    pub training: Value,
    /// The cells.
    pub cells: Vec<CellView>,
    /// The leaderboard.
    pub leaderboard: Leaderboard,
}

/// An experiment as the listing shows it: no cells, no leaderboard.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExperimentSummary {
    /// UUIDv7.
    pub id: Uuid,
    /// The client's name, if any.
    pub name: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The dataset.
    pub dataset: Uuid,
    /// The task of the dataset.
    pub task: Task,
    /// `running`, `finished` or `cancelled`.
    pub state: &'static str,
    /// Job counts.
    pub progress: ExperimentProgress,
    /// Cells in the grid.
    pub cell_count: usize,
    /// The seeds.
    pub seeds: Vec<u64>,
}
