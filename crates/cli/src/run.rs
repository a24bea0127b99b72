//! The options of `noprop train` / `noprop eval`, helpers shared by every
//! method, and NoProp-DT on the shared loop of `driver.rs`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use noprop_datasets::{
    load, BatchBuf, BatchOptions, Dataset, DatasetName, LoadOptions, Normalization,
};
use noprop_models::{ClassifierKind, DtConfig, EmbedGrad, EmbeddingKind, NoPropDt, Order};
use noprop_tensor::Tensor;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::driver::{self, Method, Phase};

/// Options of `noprop train`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Method: noprop-dt, noprop-ct, noprop-fm, backprop or adjoint.
    #[arg(long, default_value = "noprop-dt")]
    pub method: String,
    /// Dataset: mnist, fashion-mnist, cifar10, cifar100, mnist-test-split.
    #[arg(long)]
    pub dataset: String,
    /// Class embedding: one-hot, dim20 (or dimN), prototype.
    #[arg(long, default_value = "one-hot")]
    pub embedding: String,
    /// Epochs.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Seed of everything random (init, noise, dropout, shuffles).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// DT and backprop: number of blocks T (default 10). CT/FM: inference
    /// steps of the final test evaluation (default 1000, as in the paper).
    /// Adjoint: Euler steps for training and inference (default 1000).
    #[arg(long)]
    pub steps: Option<usize>,
    /// η, the weight of the L2 terms (default: 0.1 for DT, 1 for CT).
    #[arg(long)]
    pub eta: Option<f64>,
    /// CT/FM inference: ancestral (CT default), euler (FM default) or heun.
    #[arg(long)]
    pub sampler: Option<String>,
    /// CT/FM/adjoint: inference steps of the per-epoch evaluations (default: --steps).
    #[arg(long)]
    pub eval_steps: Option<usize>,
    /// FM: σ of the path of Eq. 10 (decision 11: 0).
    #[arg(long, default_value_t = 0.0)]
    pub fm_sigma: f64,
    /// FM: the anchor cross-entropy of Eq. 13: auto (on with a learned embedding), on or off.
    #[arg(long, default_value = "auto")]
    pub anchor_ce: String,
    /// CT/FM: run the image path once per image at inference (decision 17): on or off.
    #[arg(long, default_value = "on")]
    pub image_cache: String,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 1e-3)]
    pub weight_decay: f64,
    /// Loop order: batch (default) or paper (Algorithm 1).
    #[arg(long, default_value = "batch")]
    pub order: String,
    /// Output classifier: softmax (Eq. 14) or posterior (Eqs. 15–16).
    #[arg(long, default_value = "softmax")]
    pub classifier: String,
    /// σ of the posterior classifier.
    #[arg(long, default_value_t = 1.0)]
    pub sigma: f64,
    /// Gradient routes into W_Embed: all or output-only.
    #[arg(long, default_value = "all")]
    pub embed_grad: String,
    /// Fresh noise at inference (Eq. 3): on or off.
    #[arg(long, default_value = "on")]
    pub inference_noise: String,
    /// Stochastic inference runs averaged for the final test accuracy.
    #[arg(long, default_value_t = 1)]
    pub inference_runs: usize,
    /// Run the T block updates of a mini-batch sequentially even when they could run concurrently.
    #[arg(long)]
    pub sequential_blocks: bool,
    /// Use only the first N training images (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit_train: usize,
    /// Use only the first N test images (0 = all; for timing and memory runs).
    #[arg(long, default_value_t = 0)]
    pub limit_test: usize,
    /// Measure train accuracy on a seeded subset of at most N images (0 = all).
    #[arg(long, default_value_t = 10_000)]
    pub train_eval_limit: usize,
    /// Dataset root searched first.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Skip checksum verification.
    #[arg(long)]
    pub no_verify: bool,
    /// Where results and checkpoints go.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Run name (default: method-dataset-embedding-sSEED).
    #[arg(long)]
    pub name: Option<String>,
    /// Checkpoint every N mini-batches (0: only at epoch ends).
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    /// Continue from the run's last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop (as if interrupted) after N mini-batches of this invocation — for resume tests.
    #[arg(long, hide = true)]
    pub stop_after: Option<u64>,
}

/// Options of `noprop eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The checkpoint to evaluate.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset (default: the one it was trained on).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Stochastic inference runs.
    #[arg(long, default_value_t = 1)]
    pub inference_runs: usize,
    /// Fresh noise at inference: on or off.
    #[arg(long, default_value = "on")]
    pub inference_noise: String,
    /// CT/FM: inference steps (default 1000). Adjoint: Euler steps (default: as trained).
    #[arg(long)]
    pub steps: Option<usize>,
    /// CT/FM: ancestral (CT default), euler (FM default) or heun.
    #[arg(long)]
    pub sampler: Option<String>,
    /// CT/FM: run the image path once per image at inference: on or off.
    #[arg(long, default_value = "on")]
    pub image_cache: String,
    /// Dataset root searched first.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Skip checksum verification.
    #[arg(long)]
    pub no_verify: bool,
}

/// Metrics of one epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean Eq. 8 loss over the epoch's block updates.
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

pub(crate) fn on_off(s: &str) -> Result<bool> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => bail!("expected on or off, got `{s}`"),
    }
}

pub(crate) fn load_data(
    name: &str,
    data_dir: &Option<PathBuf>,
    no_verify: bool,
) -> Result<(DatasetName, noprop_datasets::TrainTest)> {
    let ds: DatasetName = name
        .parse()
        .with_context(|| format!("unknown dataset `{name}`"))?;
    let mut opts = match data_dir {
        Some(d) => LoadOptions::with_data_dir(d),
        None => LoadOptions::default(),
    };
    opts.verify = !no_verify;
    let t0 = Instant::now();
    let data = load(ds, &opts)?;
    info!(
        "loaded {} ({} train / {} test) from {} in {:.2}s",
        ds.as_str(),
        data.train.len(),
        data.test.len(),
        data.source.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok((ds, data))
}

pub(crate) fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

pub(crate) fn to_tensor(buf: &BatchBuf) -> Result<(Tensor, Vec<usize>)> {
    let x = Tensor::from_slice(buf.images(), &buf.shape())?;
    Ok((x, buf.labels().iter().map(|&l| l as usize).collect()))
}

/// Accuracy of `predict(x, batch_key)` on `data` (batches of 500, no shuffle).
pub(crate) fn accuracy_with(
    data: &Dataset,
    norm: &Normalization,
    key: u64,
    mut predict: impl FnMut(&Tensor, u64) -> Result<Vec<usize>>,
) -> Result<f64> {
    if data.is_empty() {
        return Ok(0.0);
    }
    let mut batches = data.batches(BatchOptions::new(500).normalize(norm.clone()))?;
    let mut buf = BatchBuf::new();
    let (mut correct, mut i) = (0usize, 0u64);
    while batches.next_into(&mut buf) {
        let (x, y) = to_tensor(&buf)?;
        let pred = predict(&x, key.wrapping_mul(1_000_003).wrapping_add(i))?;
        correct += pred.iter().zip(&y).filter(|(a, b)| a == b).count();
        i += 1;
    }
    Ok(correct as f64 / data.len() as f64)
}

pub(crate) fn flat_images(data: &Dataset, norm: &Normalization) -> Result<(Tensor, Vec<usize>)> {
    let mut batches = data.batches(BatchOptions::new(data.len().max(1)).normalize(norm.clone()))?;
    let mut buf = BatchBuf::new();
    if !batches.next_into(&mut buf) {
        bail!("empty training set");
    }
    let shape = buf.shape();
    let d = shape[1] * shape[2] * shape[3];
    let x = Tensor::from_slice(buf.images(), &[shape[0], d])?;
    Ok((x, buf.labels().iter().map(|&l| l as usize).collect()))
}

pub(crate) fn git_revision() -> String {
    if let Ok(r) = std::env::var("NOPROP_GIT_REV") {
        return r;
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn host_info() -> serde_json::Value {
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    serde_json::json!({
        "hostname": hostname,
        "cpu": cpu,
        "threads": rayon::current_num_threads(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

/// Where a run stands; stored in checkpoint metadata so `--resume` continues exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Epoch in progress (0-based).
    pub(crate) epoch: usize,
    /// Block in progress (paper order only, 1-based; 0 in batch order).
    pub(crate) block: usize,
    /// Next mini-batch index within the epoch (or within the block pass).
    pub(crate) batch: usize,
    /// Finished epochs' metrics.
    pub(crate) history: Vec<EpochMetrics>,
    /// Training seconds accumulated by earlier invocations.
    pub(crate) train_seconds: f64,
}

/// `noprop train`: the method's model on the shared loop of `driver.rs`.
pub fn train(a: TrainArgs) -> Result<()> {
    match a.method.as_str() {
        "noprop-dt" => train_dt(a),
        "noprop-ct" | "noprop-fm" => crate::cont::train(a),
        "backprop" | "adjoint" => crate::base::train(a),
        m => bail!("unknown method `{m}` (noprop-dt, noprop-ct, noprop-fm, backprop, adjoint)"),
    }
}

/// `noprop eval`: dispatch on the checkpoint's `method` metadata.
pub fn eval(a: EvalArgs) -> Result<()> {
    match driver::checkpoint_method(&a.checkpoint)?.as_deref() {
        Some("noprop-ct" | "noprop-fm") => crate::cont::eval(a),
        Some("backprop" | "adjoint") => crate::base::eval(a),
        _ => eval_dt(a),
    }
}

/// NoProp-DT on the shared loop: `--order batch` (one pass per epoch) or
/// `--order paper` (Algorithm 1: T passes, one per block).
struct Dt {
    model: NoPropDt,
    noise: bool,
}

impl Method for Dt {
    fn name(&self) -> String {
        "noprop-dt".into()
    }

    fn to_device(&mut self, device: &noprop_tensor::Device) -> Result<()> {
        Ok(self.model.to_device(device)?)
    }

    fn embedding(&self) -> EmbeddingKind {
        self.model.config.embedding
    }

    fn seed(&self) -> u64 {
        self.model.config.seed
    }

    fn step(&self) -> u64 {
        self.model.step
    }

    fn passes(&self) -> Option<usize> {
        (self.model.config.order == Order::Paper).then_some(self.model.config.steps)
    }

    fn train_batch(
        &mut self,
        x: &Tensor,
        y: &[usize],
        epoch: usize,
        pass: usize,
    ) -> Result<(f64, usize)> {
        Ok(match self.model.config.order {
            Order::Batch => {
                let losses = self.model.train_batch(x, y, epoch)?;
                (losses.iter().map(|l| l.total()).sum(), losses.len())
            }
            Order::Paper => {
                let l = self.model.train_block(pass, x, y, epoch)?;
                self.model.step += 1;
                (l.total(), 1)
            }
        })
    }

    fn predict(&mut self, x: &Tensor, key: u64, _phase: Phase) -> Result<Vec<usize>> {
        Ok(self.model.predict(x, self.noise, key)?)
    }

    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        Ok(self.model.save(path, meta)?)
    }

    fn describe(&mut self) -> String {
        let c = &self.model.config;
        let (steps, embedding, order) = (c.steps, c.embedding, c.order);
        format!(
            "noprop-dt: T = {}, {} params per block, embedding {}, order {:?}",
            steps,
            self.model.params_per_block(),
            embedding,
            order
        )
    }

    fn result_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let order = match self.model.config.order {
            Order::Batch => "batch",
            Order::Paper => "paper",
        };
        let mut m = serde_json::Map::new();
        m.insert("config".into(), serde_json::json!(self.model.config));
        m.insert("order".into(), order.into());
        m.insert("inference_noise".into(), self.noise.into());
        m
    }
}

fn train_dt(a: TrainArgs) -> Result<()> {
    if a.sampler.is_some() || a.eval_steps.is_some() {
        bail!("--sampler and --eval-steps apply to noprop-ct, noprop-fm (and --eval-steps to adjoint) only");
    }
    let s = driver::setup(&a)?;
    let mut cfg = DtConfig::paper(s.image, s.classes, s.embedding, a.seed);
    cfg.steps = a.steps.unwrap_or(10);
    cfg.eta = a.eta.unwrap_or(0.1);
    cfg.lr = a.lr;
    cfg.weight_decay = a.weight_decay;
    cfg.concurrent_blocks = !a.sequential_blocks;
    cfg.order = match a.order.as_str() {
        "batch" => Order::Batch,
        "paper" => Order::Paper,
        o => bail!("unknown order `{o}` (batch or paper)"),
    };
    cfg.classifier = match a.classifier.as_str() {
        "softmax" => ClassifierKind::Softmax,
        "posterior" => ClassifierKind::Posterior { sigma: a.sigma },
        c => bail!("unknown classifier `{c}` (softmax or posterior)"),
    };
    cfg.embed_grad = match a.embed_grad.as_str() {
        "all" => EmbedGrad::All,
        "output-only" => EmbedGrad::OutputOnly,
        g => bail!("unknown --embed-grad `{g}` (all or output-only)"),
    };
    let noise = on_off(&a.inference_noise)?;
    let (model, progress) = driver::resume_or_new(
        &a,
        &s.ckpt,
        &cfg,
        |p| Ok(NoPropDt::load(p)?),
        |m: &NoPropDt| &m.config,
        |m| m.step,
        || {
            Ok(NoPropDt::new(
                cfg.clone(),
                driver::new_embedding(&s, a.seed)?,
            )?)
        },
    )?;
    info!("noprop-dt on {}, batch {}", s.ds.as_str(), a.batch_size);
    driver::train_loop(&a, s, Dt { model, noise }, progress)
}

fn eval_dt(a: EvalArgs) -> Result<()> {
    if a.sampler.is_some() || a.steps.is_some() {
        bail!("--sampler and --steps apply to noprop-ct, noprop-fm (and --steps to adjoint) checkpoints only");
    }
    let started = Instant::now();
    let (model, meta) = NoPropDt::load(&a.checkpoint)
        .with_context(|| format!("loading {}", a.checkpoint.display()))?;
    let noise = on_off(&a.inference_noise)?;
    driver::eval_loop(&a, Dt { model, noise }, &meta, started)
}
