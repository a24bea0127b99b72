//! Where a run stands (stored in every checkpoint so `--resume` continues
//! exactly) and the metrics of each finished epoch.

use serde::{Deserialize, Serialize};

/// Metrics of one epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's loss values (NoProp-DT: one per block update).
    pub train_loss: f64,
    /// Accuracy on the train split (or its seeded subset).
    pub train_accuracy: f64,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// Training seconds of this epoch (evaluation excluded).
    pub train_seconds: f64,
    /// Cumulative training seconds.
    pub cumulative_train_seconds: f64,
    /// Training throughput.
    pub images_per_second: f64,
}

/// Where a run stands; the `progress` metadata entry of its checkpoints.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Epoch in progress (0-based).
    pub epoch: usize,
    /// Pass in progress (NoProp-DT `--order paper` only, 1-based; 0 otherwise).
    pub block: usize,
    /// Next mini-batch index within the epoch (or within the pass).
    pub batch: usize,
    /// Finished epochs' metrics.
    pub history: Vec<EpochMetrics>,
    /// Training seconds accumulated by earlier invocations.
    pub train_seconds: f64,
}

/// The checkpoint metadata key holding [`Progress`] as JSON.
pub const PROGRESS_KEY: &str = "progress";
