//! One training loop and one evaluation for every method.
//!
//! A method (NoProp-DT in either order, NoProp-CT/FM, the back-propagation
//! baseline, the adjoint neural ODE) implements [`Method`]: how to train on
//! one mini-batch, how to predict, how to checkpoint, and which
//! method-specific fields its JSON result carries. Everything else — data
//! loading, seeded shuffles, checkpoints at epoch ends and every N steps,
//! `--resume` (bit-identical: the progress is stored in the checkpoint),
//! `--stop-after`, progress bars, per-epoch metrics, the final stochastic
//! inference runs, the JSON result with peak memory and the `RESULT {json}`
//! last line — lives here, once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use noprop_datasets::{BatchBuf, BatchOptions, Dataset, DatasetName, Normalization, TrainTest};
use noprop_models::{ClassEmbedding, EmbeddingKind};
use noprop_tensor::{Device, Tensor};
use serde_json::{Map, Value};
use tracing::info;

use crate::alloc;
use crate::run::{
    accuracy_with, bar, flat_images, git_revision, host_info, load_data, to_tensor, EpochMetrics,
    EvalArgs, Progress, TrainArgs,
};

/// Which evaluation a prediction is for (CT/FM and the adjoint may use fewer
/// inference steps for the per-epoch evaluations than for the final one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The per-epoch test/train accuracies.
    Epoch,
    /// The final test accuracy (and `noprop eval`).
    Final,
}

/// What the generic loop needs from a method.
pub(crate) trait Method {
    /// The method's name in results (`noprop-dt`, `backprop`, ...).
    fn name(&self) -> String;
    /// The class embedding.
    fn embedding(&self) -> EmbeddingKind;
    /// The master seed.
    fn seed(&self) -> u64;
    /// Mini-batches trained so far (checkpoints fall on multiples of `--checkpoint-every`).
    fn step(&self) -> u64;
    /// `Some(P)`: every epoch makes `P` passes over the training set, each
    /// with its own shuffle, and the pass in progress is recorded (1-based) in
    /// the checkpoint (NoProp-DT's `--order paper`); `None`: one pass.
    fn passes(&self) -> Option<usize> {
        None
    }
    /// Train on one mini-batch during pass `pass` (1-based); returns the sum
    /// of the loss values it produced and how many there were (the epoch's
    /// `train_loss` is their mean).
    fn train_batch(
        &mut self,
        x: &Tensor,
        y: &[usize],
        epoch: usize,
        pass: usize,
    ) -> Result<(f64, usize)>;
    /// Predicted classes for `x`; `key` seeds the inference noise.
    fn predict(&mut self, x: &Tensor, key: u64, phase: Phase) -> Result<Vec<usize>>;
    /// Write a checkpoint holding `meta`.
    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()>;
    /// One line describing the model for the start of training.
    fn describe(&mut self) -> String;
    /// Extra text for the per-epoch log line.
    fn epoch_note(&self) -> String {
        String::new()
    }
    /// Method-specific fields of the training result (at least `config`).
    fn result_fields(&self) -> Map<String, Value>;
    /// Move the model (parameters, buffers, optimiser state) to `device`.
    /// Only NoProp-DT runs on CUDA so far; the default accepts the CPU only.
    fn to_device(&mut self, device: &Device) -> Result<()> {
        if device.is_cpu() {
            Ok(())
        } else {
            bail!(
                "{} does not run on {device} yet (only noprop-dt does); use --device cpu",
                self.name()
            )
        }
    }
    /// Method-specific fields of an evaluation result.
    fn eval_fields(&self) -> Map<String, Value> {
        Map::new()
    }
}

/// What every training run shares before a model exists.
pub(crate) struct Setup {
    /// The dataset.
    pub(crate) ds: DatasetName,
    /// Its splits (the training split cut by `--limit-train`).
    pub(crate) data: TrainTest,
    /// The normalisation computed on the training split.
    pub(crate) norm: Normalization,
    /// `(C, H, W)`.
    pub(crate) image: (usize, usize, usize),
    /// Number of classes.
    pub(crate) classes: usize,
    /// The requested embedding.
    pub(crate) embedding: EmbeddingKind,
    /// Run name.
    pub(crate) name: String,
    /// `results/checkpoints/<name>/last.safetensors`.
    pub(crate) ckpt: PathBuf,
    /// When the command started.
    pub(crate) started: Instant,
    /// Where training runs (`--device`).
    pub(crate) device: Device,
}

/// Check the device, load the data, name the run and create its checkpoint folder.
pub(crate) fn setup(a: &TrainArgs) -> Result<Setup> {
    let (device, why) = Device::parse(&a.device)?;
    info!("device: {why}");
    let started = Instant::now();
    let (ds, mut data) = load_data(&a.dataset, &a.data_dir, a.no_verify)?;
    if a.limit_train > 0 && a.limit_train < data.train.len() {
        data.train = data.train.slice(0..a.limit_train)?;
    }
    if a.limit_test > 0 && a.limit_test < data.test.len() {
        data.test = data.test.slice(0..a.limit_test)?;
    }
    let norm = data.normalization();
    let shape = data.train.shape();
    let image = (shape.channels, shape.height, shape.width);
    let classes = data.train.num_classes();
    let embedding: EmbeddingKind = a.embedding.parse()?;
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-{}-s{}", a.method, ds.as_str(), embedding, a.seed));
    let ckpt_dir = a.results_dir.join("checkpoints").join(&name);
    std::fs::create_dir_all(&ckpt_dir)
        .with_context(|| format!("creating {}", ckpt_dir.display()))?;
    let ckpt = ckpt_dir.join("last.safetensors");
    Ok(Setup {
        ds,
        data,
        norm,
        image,
        classes,
        embedding,
        name,
        ckpt,
        started,
        device,
    })
}

/// The class embedding a fresh run starts from (prototype: decision 13).
pub(crate) fn new_embedding(s: &Setup, seed: u64) -> Result<ClassEmbedding> {
    Ok(match s.embedding {
        EmbeddingKind::OneHot => ClassEmbedding::one_hot(s.classes),
        EmbeddingKind::Learned { dim } => ClassEmbedding::learned(s.classes, dim, seed),
        EmbeddingKind::Prototype => {
            let (x, y) = flat_images(&s.data.train, &s.norm)?;
            ClassEmbedding::prototype(&x, &y, s.classes, 1000, seed)?
        }
    })
}

/// With `--resume` and an existing checkpoint, `load` it and check that it
/// was written with the requested configuration (`config_of(model) ==
/// requested`); otherwise build a `fresh` model.
pub(crate) fn resume_or_new<M, C: PartialEq + std::fmt::Debug>(
    a: &TrainArgs,
    ckpt: &Path,
    requested: &C,
    load: impl FnOnce(&Path) -> Result<(M, HashMap<String, String>)>,
    config_of: impl Fn(&M) -> &C,
    step_of: impl Fn(&M) -> u64,
    fresh: impl FnOnce() -> Result<M>,
) -> Result<(M, Progress)> {
    if !(a.resume && ckpt.exists()) {
        return Ok((fresh()?, Progress::default()));
    }
    let (m, meta) = load(ckpt)?;
    if config_of(&m) != requested {
        bail!(
            "{}: the checkpoint was written with a different configuration; \
             remove it or run with the same flags\n  checkpoint: {:?}\n  requested:  {:?}",
            ckpt.display(),
            config_of(&m),
            requested
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
        step_of(&m)
    );
    Ok((m, p))
}

fn save_ckpt<M: Method>(model: &mut M, path: &Path, progress: &Progress) -> Result<()> {
    let meta = HashMap::from([("progress".to_string(), serde_json::to_string(progress)?)]);
    model
        .save(path, meta)
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

fn accuracy<M: Method>(
    model: &mut M,
    data: &Dataset,
    norm: &Normalization,
    key: u64,
    phase: Phase,
    device: &Device,
) -> Result<f64> {
    accuracy_with(data, norm, key, |x, k| {
        model.predict(&x.to_device(device)?, k, phase)
    })
}

/// The training loop shared by every method, then the final evaluation and
/// the JSON result (`RESULT {json}` on the last line of stdout).
pub(crate) fn train_loop<M: Method>(
    a: &TrainArgs,
    s: Setup,
    mut model: M,
    mut progress: Progress,
) -> Result<()> {
    let (data, norm, ckpt) = (&s.data, &s.norm, &s.ckpt);
    // `--device auto` picked a GPU: a method without a CUDA path (all but
    // NoProp-DT so far) says so and trains on the CPU instead of failing.
    let cpu = Device::Cpu;
    let mut device = &s.device;
    if let Err(e) = model.to_device(device) {
        if a.device == "auto" && !device.is_cpu() {
            info!("{e:#}; --device auto falls back to the CPU");
            device = &cpu;
        } else {
            return Err(e);
        }
    }
    info!("{}", model.describe());
    let n_train = data.train.len();
    let batches_per_epoch = n_train.div_ceil(a.batch_size);
    let train_eval = if a.train_eval_limit > 0 && a.train_eval_limit < n_train {
        let idx = data
            .train
            .class_balanced_indices(a.train_eval_limit.div_ceil(s.classes), Some(a.seed))?;
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
    let multi = model.passes();
    let passes = multi.unwrap_or(1);
    // Heap high-water mark over the training mini-batches only (evaluation,
    // with its larger batches, excluded), and the live heap (data, model,
    // optimiser) before training starts.
    let live_before_training = alloc::live_heap_bytes();
    let mut peak_train = 0usize;

    while progress.epoch < a.epochs {
        let epoch = progress.epoch;
        let t_epoch = Instant::now();
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        let pb = bar(
            (batches_per_epoch * passes) as u64,
            "epoch {msg} {pos}/{len} [{elapsed_precise}<{eta_precise}] {wide_bar} {per_sec}",
        );
        pb.set_message(format!("{}", epoch + 1));
        alloc::reset_window();
        for pass in progress.block.max(1)..=passes {
            let mut batches = data.train.batches(
                BatchOptions::new(a.batch_size)
                    .shuffle(a.seed)
                    .epoch((epoch * passes + pass - 1) as u64)
                    .normalize(norm.clone()),
            )?;
            let mut bi = 0usize;
            while batches.next_into(&mut buf) {
                if bi < progress.batch {
                    bi += 1;
                    continue;
                }
                let (x, y) = to_tensor(&buf)?;
                let x = x.to_device(device)?;
                let (l, n) = model.train_batch(&x, &y, epoch, pass)?;
                loss_sum += l;
                loss_n += n;
                bi += 1;
                progress.batch = bi;
                progress.block = if multi.is_some() { pass } else { 0 };
                pb.inc(1);
                done_this_run += 1;
                if a.checkpoint_every > 0 && model.step() % a.checkpoint_every == 0 {
                    progress.train_seconds = cumulative + t_epoch.elapsed().as_secs_f64();
                    save_ckpt(&mut model, ckpt, &progress)?;
                }
                if a.stop_after == Some(done_this_run) {
                    progress.train_seconds = cumulative + t_epoch.elapsed().as_secs_f64();
                    save_ckpt(&mut model, ckpt, &progress)?;
                    pb.finish_and_clear();
                    info!(
                        "stopping after {done_this_run} mini-batches as asked (--stop-after); checkpoint {}",
                        ckpt.display()
                    );
                    return Ok(());
                }
            }
            progress.batch = 0;
            progress.block = if multi.is_some() { pass + 1 } else { 0 };
        }
        pb.finish_and_clear();
        device.synchronize()?;
        peak_train = peak_train.max(alloc::window_peak_bytes());
        let train_seconds = t_epoch.elapsed().as_secs_f64();
        cumulative += train_seconds;
        let ev = Instant::now();
        let test_acc = accuracy(
            &mut model,
            &data.test,
            norm,
            1 + epoch as u64,
            Phase::Epoch,
            device,
        )?;
        let train_acc = accuracy(
            &mut model,
            &train_eval,
            norm,
            1_000 + epoch as u64,
            Phase::Epoch,
            device,
        )?;
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
            "epoch {}/{}: loss {:.4}, train acc {:.4}, test acc {:.4}, {:.1}s ({:.0} img/s), eval {:.1}s{}",
            epoch + 1,
            a.epochs,
            m.train_loss,
            train_acc,
            test_acc,
            train_seconds,
            m.images_per_second,
            ev.elapsed().as_secs_f64(),
            model.epoch_note()
        );
        epochs_bar.inc(1);
        progress.history.push(m);
        progress.epoch += 1;
        progress.block = 0;
        progress.batch = 0;
        progress.train_seconds = cumulative;
        save_ckpt(&mut model, ckpt, &progress)?;
    }
    epochs_bar.finish_and_clear();

    // Final test accuracy over the requested stochastic inference runs.
    let t_inf = Instant::now();
    let mut runs = Vec::new();
    for r in 0..a.inference_runs.max(1) {
        runs.push(accuracy(
            &mut model,
            &data.test,
            norm,
            1_000_000 + r as u64,
            Phase::Final,
            device,
        )?);
    }
    let inference_seconds = t_inf.elapsed().as_secs_f64() / runs.len() as f64;
    let test_accuracy = runs.iter().sum::<f64>() / runs.len() as f64;
    let train_accuracy = progress.history.last().map_or(0.0, |m| m.train_accuracy);
    let results_path = a.results_dir.join(format!("{}.json", s.name));
    let mut result = serde_json::json!({
        "method": a.method,
        "dataset": s.ds.as_str(),
        "embedding": s.embedding.to_string(),
        "epochs": a.epochs,
        "seed": a.seed,
        "test_accuracy": test_accuracy,
        "test_accuracy_runs": runs,
        "train_accuracy": train_accuracy,
        "train_accuracy_subset": train_eval.len(),
        "wall_seconds": s.started.elapsed().as_secs_f64(),
        "train_seconds": cumulative,
        "images_per_second": (n_train * passes * a.epochs) as f64 / cumulative.max(1e-9),
        "inference_seconds": inference_seconds,
        "peak_memory_bytes": alloc::peak_heap_bytes(),
        "peak_rss_bytes": alloc::peak_rss_bytes(),
        "peak_train_memory_bytes": peak_train,
        "live_memory_before_training_bytes": live_before_training,
        "result_path": results_path.display().to_string(),
        "checkpoint": ckpt.display().to_string(),
        "batch_size": a.batch_size,
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
    if let Value::Object(obj) = &mut result {
        obj.extend(model.result_fields());
    }
    std::fs::create_dir_all(&a.results_dir)?;
    let tmp = results_path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &results_path)?;
    info!(
        "test accuracy {:.4} ({:.1}s per inference run) — result written to {}",
        test_accuracy,
        inference_seconds,
        results_path.display()
    );
    println!("RESULT {}", serde_json::to_string(&result)?);
    Ok(())
}

/// The `method` a checkpoint records in its metadata (`None` for old
/// NoProp-DT checkpoints without one).
pub(crate) fn checkpoint_method(path: &Path) -> Result<Option<String>> {
    let (_, meta) =
        noprop_nn::io::load(path).with_context(|| format!("loading {}", path.display()))?;
    Ok(meta.get("method").cloned())
}

/// `noprop eval` of a loaded model: the test accuracy over the requested
/// stochastic inference runs, printed as `RESULT {json}`.
pub(crate) fn eval_loop<M: Method>(
    a: &EvalArgs,
    mut model: M,
    meta: &HashMap<String, String>,
    started: Instant,
) -> Result<()> {
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
    let t_inf = Instant::now();
    let mut runs = Vec::new();
    for r in 0..a.inference_runs.max(1) {
        runs.push(accuracy(
            &mut model,
            &data.test,
            &norm,
            2_000_000 + r as u64,
            Phase::Final,
            &Device::Cpu,
        )?);
    }
    let inference_seconds = t_inf.elapsed().as_secs_f64() / runs.len() as f64;
    let test_accuracy = runs.iter().sum::<f64>() / runs.len() as f64;
    let mut result = serde_json::json!({
        "method": model.name(),
        "dataset": ds.as_str(),
        "embedding": model.embedding().to_string(),
        "epochs": progress.epoch,
        "seed": model.seed(),
        "test_accuracy": test_accuracy,
        "test_accuracy_runs": runs,
        "train_accuracy": progress.history.last().map(|m| m.train_accuracy),
        "inference_seconds": inference_seconds,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "images_per_second": (data.test.len() * runs.len()) as f64 / started.elapsed().as_secs_f64(),
        "peak_memory_bytes": alloc::peak_heap_bytes(),
        "peak_rss_bytes": alloc::peak_rss_bytes(),
        "result_path": Value::Null,
        "checkpoint": a.checkpoint.display().to_string(),
        "git_revision": git_revision(),
    });
    if let Value::Object(obj) = &mut result {
        obj.extend(model.eval_fields());
    }
    println!("RESULT {}", serde_json::to_string(&result)?);
    Ok(())
}
