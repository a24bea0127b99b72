//! Where a run stands (stored in every checkpoint so `--resume` continues
//! exactly) and the metrics of each finished epoch.

use std::collections::HashMap;
use std::path::Path;

use noprop_datasets::Normalization;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

/// The checkpoint metadata key holding the input normalisation the model
/// was trained with (`{"mean": [...], "std": [...]}`, one value per channel
/// on the `[0, 1]` scale), so that evaluation normalises exactly as
/// training did even when training used a subset (`limit_train`).
pub const NORMALIZATION_KEY: &str = "normalization";

#[derive(Serialize, Deserialize)]
struct NormJson {
    mean: Vec<f32>,
    std: Vec<f32>,
}

/// `norm` as the JSON stored under [`NORMALIZATION_KEY`] (f32 values
/// round-trip exactly).
pub(crate) fn normalization_json(norm: &Normalization) -> String {
    serde_json::json!({ "mean": norm.mean, "std": norm.std }).to_string()
}

/// The normalisation recorded in a checkpoint's metadata; `None` for
/// checkpoints written before it was recorded.
pub fn recorded_normalization(
    path: &Path,
    meta: &HashMap<String, String>,
) -> Result<Option<Normalization>> {
    let Some(s) = meta.get(NORMALIZATION_KEY) else {
        return Ok(None);
    };
    let n: NormJson = serde_json::from_str(s).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        why: format!("bad {NORMALIZATION_KEY} metadata: {e}"),
    })?;
    let ok = !n.mean.is_empty()
        && n.mean.len() == n.std.len()
        && n.mean.iter().all(|v| v.is_finite())
        && n.std.iter().all(|v| v.is_finite() && *v > 0.0);
    if !ok {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            why: format!("bad {NORMALIZATION_KEY} metadata: {s}"),
        });
    }
    Ok(Some(Normalization {
        mean: n.mean,
        std: n.std,
    }))
}
