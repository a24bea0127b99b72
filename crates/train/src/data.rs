//! Loading a dataset for a run, turning batches into tensors, and measuring
//! accuracy.

use std::path::PathBuf;
use std::time::Instant;

use noprop_datasets::{
    load, BatchBuf, BatchOptions, Dataset, DatasetName, LoadOptions, Normalization, TrainTest,
};
use noprop_tensor::Tensor;
use tracing::info;

use crate::error::{Error, Result};

/// Load `name` (searching `data_dir` first), verifying checksums unless
/// `verify` is false.
pub fn load_data(name: DatasetName, data_dir: &Option<PathBuf>, verify: bool) -> Result<TrainTest> {
    let mut opts = match data_dir {
        Some(d) => LoadOptions::with_data_dir(d),
        None => LoadOptions::default(),
    };
    opts.verify = verify;
    let t0 = Instant::now();
    let data = load(name, &opts)?;
    info!(
        "loaded {} ({} train / {} test) from {} in {:.2}s",
        name.as_str(),
        data.train.len(),
        data.test.len(),
        data.source.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(data)
}

/// A host batch as an `[N, C, H, W]` tensor and its labels.
pub fn to_tensor(buf: &BatchBuf) -> Result<(Tensor, Vec<usize>)> {
    let x = Tensor::from_slice(buf.images(), &buf.shape())?;
    Ok((x, buf.labels().iter().map(|&l| l as usize).collect()))
}

/// Batches of the per-epoch and final evaluations.
pub const EVAL_BATCH: usize = 500;

/// Accuracy of `predict(x, batch_key)` on `data` (batches of
/// [`EVAL_BATCH`], no shuffle); `on_batch(done, total)` after each batch.
pub fn accuracy_with(
    data: &Dataset,
    norm: &Normalization,
    key: u64,
    mut predict: impl FnMut(&Tensor, u64) -> Result<Vec<usize>>,
    mut on_batch: impl FnMut(usize, usize),
) -> Result<f64> {
    if data.is_empty() {
        return Ok(0.0);
    }
    let total = data.len().div_ceil(EVAL_BATCH);
    let mut batches = data.batches(BatchOptions::new(EVAL_BATCH).normalize(norm.clone()))?;
    let mut buf = BatchBuf::new();
    let (mut correct, mut i) = (0usize, 0u64);
    while batches.next_into(&mut buf) {
        let (x, y) = to_tensor(&buf)?;
        let pred = predict(&x, key.wrapping_mul(1_000_003).wrapping_add(i))?;
        correct += pred.iter().zip(&y).filter(|(a, b)| a == b).count();
        i += 1;
        on_batch(i as usize, total);
    }
    Ok(correct as f64 / data.len() as f64)
}

/// Every image of `data`, normalised, as one `[N, C·H·W]` tensor, with labels
/// (the prototype embedding's input).
pub fn flat_images(data: &Dataset, norm: &Normalization) -> Result<(Tensor, Vec<usize>)> {
    let mut batches = data.batches(BatchOptions::new(data.len().max(1)).normalize(norm.clone()))?;
    let mut buf = BatchBuf::new();
    if !batches.next_into(&mut buf) {
        return Err(Error::config("the training set is empty"));
    }
    let shape = buf.shape();
    let d = shape[1] * shape[2] * shape[3];
    let x = Tensor::from_slice(buf.images(), &[shape[0], d])?;
    Ok((x, buf.labels().iter().map(|&l| l as usize).collect()))
}
