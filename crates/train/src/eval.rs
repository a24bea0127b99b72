//! Evaluating a checkpoint of any method (`noprop eval`).

use std::time::Instant;

use serde_json::Value;
use tracing::info;

use crate::config::EvalConfig;
use crate::data::{accuracy_with, load_data};
use crate::error::{Error, Result};
use crate::host::git_revision;
use crate::memory;
use crate::method::Phase;
use crate::methods;
use crate::progress::recorded_normalization;

/// The result of [`evaluate`].
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// Test accuracy, mean over the inference runs.
    pub test_accuracy: f64,
    /// Each inference run's accuracy.
    pub runs: Vec<f64>,
    /// The full JSON result (what `noprop eval` prints after `RESULT `).
    pub result: Value,
}

/// Test accuracy of the checkpoint `c.checkpoint` on `c.dataset`'s test
/// split, over `c.inference_runs` stochastic inference runs.
///
/// Call it from a rayon worker for speed, as [`crate::Trainer`]'s docs on
/// threads say.
pub fn evaluate(c: &EvalConfig) -> Result<EvalReport> {
    let started = Instant::now();
    if c.inference_runs == 0 {
        return Err(Error::config("--inference-runs must be at least 1"));
    }
    let (device, why) = c.device.open()?;
    info!("device: {why}");
    let (mut model, meta) = methods::for_eval(c)?;
    model.to_device(&device)?;
    let progress = methods::progress_of(&c.checkpoint, &meta).unwrap_or_default();
    let mut data = load_data(c.dataset, &c.data_dir, c.verify)?;
    if c.limit_test > 0 && c.limit_test < data.test.len() {
        data.test = data.test.slice(0..c.limit_test)?;
    }
    // Normalise as training did: the statistics recorded in the checkpoint
    // (of the images it was trained on, `limit_train` included), or, for a
    // checkpoint written before they were recorded, those of the training split.
    let norm = match recorded_normalization(&c.checkpoint, &meta)? {
        Some(n) if n.channels() == data.test.shape().channels => n,
        Some(n) => {
            return Err(Error::Checkpoint {
                path: c.checkpoint.clone(),
                why: format!(
                    "trained on {}-channel images, but {} has {} channels",
                    n.channels(),
                    c.dataset,
                    data.test.shape().channels
                ),
            })
        }
        None => {
            info!("the checkpoint records no input normalisation (written by an older noprop); using the statistics of the whole training split");
            data.normalization()
        }
    };
    let t_inf = Instant::now();
    let mut runs = Vec::new();
    for r in 0..c.inference_runs {
        runs.push(accuracy_with(
            &data.test,
            &norm,
            2_000_000 + r as u64,
            |x, k| model.predict(&x.to_device(&device)?, k, Phase::Final),
            |_, _| {},
        )?);
    }
    let inference_seconds = t_inf.elapsed().as_secs_f64() / runs.len() as f64;
    let test_accuracy = runs.iter().sum::<f64>() / runs.len() as f64;
    let wall = started.elapsed().as_secs_f64();
    let mut result = serde_json::json!({
        "method": model.method().as_str(),
        "dataset": c.dataset.as_str(),
        "embedding": model.embedding().to_string(),
        "epochs": progress.epoch,
        "seed": model.seed(),
        "test_accuracy": test_accuracy,
        "test_accuracy_runs": runs,
        "train_accuracy": progress.history.last().map(|m| m.train_accuracy),
        "inference_seconds": inference_seconds,
        "wall_seconds": wall,
        "images_per_second": (data.test.len() * runs.len()) as f64 / wall,
        "peak_memory_bytes": memory::peak_heap_bytes(),
        "peak_rss_bytes": memory::peak_rss_bytes(),
        "result_path": Value::Null,
        "checkpoint": c.checkpoint.display().to_string(),
        "device": device.to_string(),
        "git_revision": git_revision(),
    });
    if let Value::Object(obj) = &mut result {
        obj.extend(model.eval_fields());
    }
    Ok(EvalReport {
        test_accuracy,
        runs,
        result,
    })
}
