//! The training and evaluation loops behind `noprop train` / `noprop eval`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use noprop_datasets::{
    load, BatchBuf, BatchOptions, Dataset, DatasetName, LoadOptions, Normalization,
};
use noprop_models::{
    ClassEmbedding, ClassifierKind, DtConfig, EmbedGrad, EmbeddingKind, NoPropDt, Order,
};
use noprop_tensor::Tensor;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::alloc;

/// Options of `noprop train`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Method: noprop-dt, noprop-ct or noprop-fm.
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
    /// DT: number of blocks T (default 10). CT/FM: inference steps of the
    /// final test evaluation (default 1000, as in the paper).
    #[arg(long)]
    pub steps: Option<usize>,
    /// η, the weight of the L2 terms (default: 0.1 for DT, 1 for CT).
    #[arg(long)]
    pub eta: Option<f64>,
    /// CT/FM inference: ancestral (CT default), euler (FM default) or heun.
    #[arg(long)]
    pub sampler: Option<String>,
    /// CT/FM: inference steps of the per-epoch evaluations (default: --steps).
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
    /// CT/FM: inference steps (default 1000).
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

/// Accuracy of `model` on `data` (batches of 500, no shuffle); `key` seeds the inference noise.
fn accuracy(
    model: &mut NoPropDt,
    data: &Dataset,
    norm: &Normalization,
    noise: bool,
    key: u64,
) -> Result<f64> {
    let device = model.device().clone();
    accuracy_with(data, norm, key, |x, k| {
        Ok(model.predict(&x.to_device(&device)?, noise, k)?)
    })
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

fn save_ckpt(model: &mut NoPropDt, path: &Path, progress: &Progress) -> Result<()> {
    let meta = HashMap::from([("progress".to_string(), serde_json::to_string(progress)?)]);
    model
        .save(path, meta)
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

/// `noprop train`.
pub fn train(a: TrainArgs) -> Result<()> {
    match a.method.as_str() {
        "noprop-dt" => {}
        "noprop-ct" | "noprop-fm" => return crate::cont::train(a),
        m => bail!("unknown method `{m}` (noprop-dt, noprop-ct, noprop-fm)"),
    }
    if a.sampler.is_some() || a.eval_steps.is_some() {
        bail!("--sampler and --eval-steps apply to noprop-ct and noprop-fm only");
    }
    let (device, why) = noprop_tensor::Device::parse(&a.device)?;
    info!("device: {why}");
    let started = Instant::now();
    let (ds, mut data) = load_data(&a.dataset, &a.data_dir, a.no_verify)?;
    if a.limit_train > 0 && a.limit_train < data.train.len() {
        data.train = data.train.slice(0..a.limit_train)?;
    }
    let norm = data.normalization();
    let shape = data.train.shape();
    let image = (shape.channels, shape.height, shape.width);
    let classes = data.train.num_classes();
    let embedding: EmbeddingKind = a.embedding.parse()?;
    let mut cfg = DtConfig::paper(image, classes, embedding, a.seed);
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
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-{}-s{}", a.method, ds.as_str(), embedding, a.seed));
    let ckpt_dir = a.results_dir.join("checkpoints").join(&name);
    std::fs::create_dir_all(&ckpt_dir)
        .with_context(|| format!("creating {}", ckpt_dir.display()))?;
    let ckpt = ckpt_dir.join("last.safetensors");

    let (mut model, mut progress) = if a.resume && ckpt.exists() {
        let (m, meta) = NoPropDt::load(&ckpt)?;
        if m.config != cfg {
            bail!(
                "{}: the checkpoint was written with a different configuration; \
                 remove it or run with the same flags\n  checkpoint: {:?}\n  requested:  {:?}",
                ckpt.display(),
                m.config,
                cfg
            );
        }
        let p: Progress = match meta.get("progress") {
            Some(s) => serde_json::from_str(s)
                .with_context(|| format!("{}: bad progress metadata", ckpt.display()))?,
            None => bail!("{}: no progress metadata", ckpt.display()),
        };
        info!(
            "resuming from {} at epoch {}, batch {} (step {})",
            ckpt.display(),
            p.epoch + 1,
            p.batch,
            m.step
        );
        (m, p)
    } else {
        let emb = match embedding {
            EmbeddingKind::OneHot => ClassEmbedding::one_hot(classes),
            EmbeddingKind::Learned { dim } => ClassEmbedding::learned(classes, dim, a.seed),
            EmbeddingKind::Prototype => {
                let (x, y) = flat_images(&data.train, &norm)?;
                ClassEmbedding::prototype(&x, &y, classes, 1000, a.seed)?
            }
        };
        (NoPropDt::new(cfg.clone(), emb)?, Progress::default())
    };
    model.to_device(&device)?;
    info!(
        "{} on {}: T = {}, {} params per block, embedding {}, order {:?}, batch {}",
        a.method,
        ds.as_str(),
        cfg.steps,
        model.params_per_block(),
        embedding,
        cfg.order,
        a.batch_size
    );

    let n_train = data.train.len();
    let batches_per_epoch = n_train.div_ceil(a.batch_size);
    let train_eval = if a.train_eval_limit > 0 && a.train_eval_limit < n_train {
        let idx = data
            .train
            .class_balanced_indices(a.train_eval_limit.div_ceil(classes), Some(a.seed))?;
        data.train
            .subset(&idx[..a.train_eval_limit.min(idx.len())])?
    } else {
        data.train.clone()
    };
    let epochs_bar = bar(
        a.epochs as u64,
        "epochs {pos}/{len} [{elapsed_precise}] {wide_bar} {msg}",
    );
    epochs_bar.set_position(progress.epoch as u64);
    let mut buf = BatchBuf::new();
    let mut done_this_run = 0u64;
    let mut cumulative = progress.train_seconds;
    let passes = if cfg.order == Order::Paper {
        cfg.steps
    } else {
        1
    };

    while progress.epoch < a.epochs {
        let epoch = progress.epoch;
        let t_epoch = Instant::now();
        let mut loss_sum = 0.0;
        let mut loss_n = 0usize;
        let pb = bar(
            (batches_per_epoch * passes) as u64,
            "epoch {msg} {pos}/{len} [{elapsed_precise}<{eta_precise}] {wide_bar} {per_sec}",
        );
        pb.set_message(format!("{}", epoch + 1));
        let first_block = progress.block.max(1);
        for pass in 0..passes {
            let block = first_block + pass;
            if cfg.order == Order::Paper && block > cfg.steps {
                break;
            }
            let mut batches = data.train.batches(
                BatchOptions::new(a.batch_size)
                    .shuffle(a.seed)
                    .epoch((epoch * passes + block - 1) as u64)
                    .normalize(norm.clone()),
            )?;
            let mut bi = 0usize;
            while batches.next_into(&mut buf) {
                if bi < progress.batch {
                    bi += 1;
                    continue;
                }
                let (x, y) = to_tensor(&buf)?;
                let x = x.to_device(&device)?;
                match cfg.order {
                    Order::Batch => {
                        let losses = model.train_batch(&x, &y, epoch)?;
                        loss_sum += losses.iter().map(|l| l.total()).sum::<f64>();
                        loss_n += losses.len();
                    }
                    Order::Paper => {
                        let l = model.train_block(block, &x, &y, epoch)?;
                        model.step += 1;
                        loss_sum += l.total();
                        loss_n += 1;
                    }
                }
                bi += 1;
                progress.batch = bi;
                progress.block = if cfg.order == Order::Paper { block } else { 0 };
                pb.inc(1);
                done_this_run += 1;
                if a.checkpoint_every > 0 && model.step % a.checkpoint_every == 0 {
                    progress.train_seconds = cumulative + t_epoch.elapsed().as_secs_f64();
                    save_ckpt(&mut model, &ckpt, &progress)?;
                }
                if a.stop_after == Some(done_this_run) {
                    progress.train_seconds = cumulative + t_epoch.elapsed().as_secs_f64();
                    save_ckpt(&mut model, &ckpt, &progress)?;
                    pb.finish_and_clear();
                    info!("stopping after {done_this_run} mini-batches as asked (--stop-after); checkpoint {}", ckpt.display());
                    return Ok(());
                }
            }
            progress.batch = 0;
            progress.block = if cfg.order == Order::Paper {
                block + 1
            } else {
                0
            };
        }
        pb.finish_and_clear();
        device.synchronize()?;
        let train_seconds = t_epoch.elapsed().as_secs_f64();
        cumulative += train_seconds;
        let ev = Instant::now();
        let test_acc = accuracy(&mut model, &data.test, &norm, noise, 1 + epoch as u64)?;
        let train_acc = accuracy(&mut model, &train_eval, &norm, noise, 1_000 + epoch as u64)?;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / loss_n.max(1) as f64,
            train_accuracy: train_acc,
            test_accuracy: test_acc,
            train_seconds,
            cumulative_train_seconds: cumulative,
            images_per_second: (n_train * passes) as f64 / train_seconds,
        };
        info!(
            "epoch {}/{}: loss {:.4}, train acc {:.4}, test acc {:.4}, {:.1}s ({:.0} img/s), eval {:.1}s",
            epoch + 1,
            a.epochs,
            m.train_loss,
            train_acc,
            test_acc,
            train_seconds,
            m.images_per_second,
            ev.elapsed().as_secs_f64()
        );
        epochs_bar.inc(1);
        progress.history.push(m);
        progress.epoch += 1;
        progress.block = 0;
        progress.batch = 0;
        progress.train_seconds = cumulative;
        save_ckpt(&mut model, &ckpt, &progress)?;
    }
    epochs_bar.finish_and_clear();

    // Final test accuracy over the requested stochastic inference runs.
    let mut runs = Vec::new();
    for r in 0..a.inference_runs.max(1) {
        runs.push(accuracy(
            &mut model,
            &data.test,
            &norm,
            noise,
            1_000_000 + r as u64,
        )?);
    }
    let test_accuracy = runs.iter().sum::<f64>() / runs.len() as f64;
    let train_accuracy = progress.history.last().map_or(0.0, |m| m.train_accuracy);
    let results_path = a.results_dir.join(format!("{name}.json"));
    let result = serde_json::json!({
        "method": a.method,
        "dataset": ds.as_str(),
        "embedding": embedding.to_string(),
        "epochs": a.epochs,
        "seed": a.seed,
        "test_accuracy": test_accuracy,
        "test_accuracy_runs": runs,
        "train_accuracy": train_accuracy,
        "train_accuracy_subset": train_eval.len(),
        "wall_seconds": started.elapsed().as_secs_f64(),
        "train_seconds": cumulative,
        "images_per_second": (n_train * passes * a.epochs) as f64 / cumulative.max(1e-9),
        "peak_memory_bytes": alloc::peak_heap_bytes(),
        "peak_rss_bytes": alloc::peak_rss_bytes(),
        "result_path": results_path.display().to_string(),
        "checkpoint": ckpt.display().to_string(),
        "config": cfg,
        "batch_size": a.batch_size,
        "order": a.order,
        "inference_noise": noise,
        "train_images": n_train,
        "test_images": data.test.len(),
        "data_source": data.source.display().to_string(),
        "device": device.to_string(),
        "peak_device_memory_bytes": device.peak_memory_bytes(),
        "git_revision": git_revision(),
        "host": host_info(),
        "per_epoch": progress.history,
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    std::fs::create_dir_all(&a.results_dir)?;
    let tmp = results_path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &results_path)?;
    info!(
        "test accuracy {:.4} — result written to {}",
        test_accuracy,
        results_path.display()
    );
    println!("RESULT {}", serde_json::to_string(&result)?);
    Ok(())
}

/// `noprop eval`.
pub fn eval(a: EvalArgs) -> Result<()> {
    if crate::cont::is_cont_checkpoint(&a.checkpoint)? {
        return crate::cont::eval(a);
    }
    if a.sampler.is_some() || a.steps.is_some() {
        bail!("--sampler and --steps apply to noprop-ct and noprop-fm checkpoints only");
    }
    let started = Instant::now();
    let (mut model, meta) = NoPropDt::load(&a.checkpoint)
        .with_context(|| format!("loading {}", a.checkpoint.display()))?;
    let progress: Progress = meta
        .get("progress")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let dataset = match &a.dataset {
        Some(d) => d.clone(),
        None => bail!("--dataset is required (the checkpoint does not record its dataset name)"),
    };
    let (ds, data) = load_data(&dataset, &a.data_dir, a.no_verify)?;
    let norm = data.normalization();
    let noise = on_off(&a.inference_noise)?;
    let mut runs = Vec::new();
    for r in 0..a.inference_runs.max(1) {
        runs.push(accuracy(
            &mut model,
            &data.test,
            &norm,
            noise,
            2_000_000 + r as u64,
        )?);
    }
    let test_accuracy = runs.iter().sum::<f64>() / runs.len() as f64;
    let result = serde_json::json!({
        "method": "noprop-dt",
        "dataset": ds.as_str(),
        "embedding": model.config.embedding.to_string(),
        "epochs": progress.epoch,
        "seed": model.config.seed,
        "test_accuracy": test_accuracy,
        "test_accuracy_runs": runs,
        "train_accuracy": progress.history.last().map(|m| m.train_accuracy),
        "wall_seconds": started.elapsed().as_secs_f64(),
        "images_per_second": (data.test.len() * runs.len()) as f64 / started.elapsed().as_secs_f64(),
        "peak_memory_bytes": alloc::peak_heap_bytes(),
        "result_path": serde_json::Value::Null,
        "checkpoint": a.checkpoint.display().to_string(),
        "git_revision": git_revision(),
    });
    println!("RESULT {}", serde_json::to_string(&result)?);
    Ok(())
}
