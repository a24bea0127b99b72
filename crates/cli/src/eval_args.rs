//! `noprop eval`: its options and the run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use noprop_train::{evaluate, DatasetArg, DeviceArg, EvalConfig, OnOff, SamplerArg};

use crate::switches::switch;

/// Options of `noprop eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The checkpoint to evaluate (any method; its metadata says which).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset whose test split is evaluated (checkpoints do not record it).
    #[arg(long)]
    pub dataset: Option<DatasetArg>,
    /// Stochastic inference runs averaged.
    #[arg(long, default_value_t = 1)]
    pub inference_runs: usize,
    /// NoProp: no fresh noise at inference (deterministic predictions).
    #[arg(long)]
    pub no_inference_noise: bool,
    /// Deprecated spelling of --no-inference-noise (`--inference-noise off`).
    #[arg(long, value_enum, hide = true)]
    pub inference_noise: Option<OnOff>,
    /// noprop-ct/fm: inference steps [default: 1000]. adjoint: Euler steps [default: as trained].
    #[arg(long)]
    pub steps: Option<usize>,
    /// noprop-ct/fm: the sampler [default: ancestral for CT, euler for FM].
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerArg>,
    /// noprop-ct/fm: run the image path at every inference step (same result, slower).
    #[arg(long)]
    pub no_image_cache: bool,
    /// Deprecated spelling of --no-image-cache (`--image-cache off`).
    #[arg(long, value_enum, hide = true)]
    pub image_cache: Option<OnOff>,
    /// Use only the first N test images (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit_test: usize,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
    /// A dataset root searched before the default places.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Skip checksum verification.
    #[arg(long)]
    pub no_verify: bool,
}

/// `noprop eval`: print `RESULT {json}`.
pub fn run(a: EvalArgs) -> Result<()> {
    let dataset = a
        .dataset
        .context("--dataset is required (the checkpoint does not record its dataset name)")?;
    let mut c = EvalConfig::new(&a.checkpoint, dataset.0);
    c.inference_runs = a.inference_runs;
    c.inference_noise = switch(a.no_inference_noise, a.inference_noise, "inference-noise")?;
    c.steps = a.steps;
    c.sampler = a.sampler;
    c.image_cache = switch(a.no_image_cache, a.image_cache, "image-cache")?;
    c.limit_test = a.limit_test;
    c.device = a.device;
    c.data_dir = a.data_dir;
    c.verify = !a.no_verify;
    let report = evaluate(&c).with_context(|| format!("evaluating {}", a.checkpoint.display()))?;
    println!("RESULT {}", serde_json::to_string(&report.result)?);
    Ok(())
}
