//! The training loop shared by every method: data order, checkpoint
//! cadence, bit-exact resume, per-epoch evaluation, the final stochastic
//! inference runs and the JSON result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use noprop_datasets::{BatchBuf, BatchOptions, Dataset, Normalization, TrainTest};
use noprop_models::EmbeddingKind;
use noprop_tensor::Device;
use serde_json::Value;
use tracing::info;

use crate::comm::{Communicator, SingleProcess};
use crate::config::TrainConfig;
use crate::data::{accuracy_with, load_data, to_tensor, EVAL_BATCH};
use crate::error::{Error, Result};
use crate::host::{git_revision, host_info};
use crate::memory;
use crate::method::{Method, Phase};
use crate::methods;
use crate::observe::{Event, Observer};
use crate::progress::{
    normalization_json, EpochMetrics, Progress, NORMALIZATION_KEY, PROGRESS_KEY,
};

/// What every training run shares before a model exists.
pub(crate) struct Setup {
    /// Its splits (the training split cut by `limit_train`).
    pub(crate) data: TrainTest,
    /// The normalisation computed on the training split.
    pub(crate) norm: Normalization,
    /// `(C, H, W)`.
    pub(crate) image: (usize, usize, usize),
    /// Number of classes.
    pub(crate) classes: usize,
    /// The requested embedding.
    pub(crate) embedding: EmbeddingKind,
    /// How a learned `dimN` embedding starts (`None`: the default).
    pub(crate) embedding_init: Option<noprop_models::EmbeddingInit>,
    /// `results/checkpoints/<name>/last.safetensors`.
    pub(crate) ckpt: PathBuf,
    /// The run's starting `W_Embed` when `d` = C·H·W (drawn as images
    /// beside the learned one at the end, [`crate::prototypes`]).
    pub(crate) initial_image_embedding: Option<Vec<f32>>,
}

/// How a [`Trainer::fit`] call ended.
#[derive(Clone, Debug)]
pub struct TrainReport {
    /// Final test accuracy, mean over the inference runs (`None` when the
    /// run stopped early with `stop_after`).
    pub test_accuracy: Option<f64>,
    /// Every finished epoch's metrics (including those of earlier invocations).
    pub history: Vec<EpochMetrics>,
    /// The checkpoint written last.
    pub checkpoint: PathBuf,
    /// The JSON result file (`None` when stopped early).
    pub result_path: Option<PathBuf>,
    /// The full JSON result as written (`Value::Null` when stopped early).
    pub result: Value,
}

/// Trains one method on one dataset: `Trainer::new(config)?.fit()`.
///
/// Observers ([`Trainer::observe`]) see every epoch, mini-batch and
/// evaluation batch; without any the run is silent apart from `tracing`
/// log lines.
///
/// With [`Trainer::communicator`] and `distributed` set, every rank of the
/// group runs its own `Trainer`; rank 0 alone tells its observers, writes
/// the JSON result and the checkpoints.
///
/// # Threads
/// The tensor ops split their work over rayon's global pool. Call `fit`
/// from one of the pool's workers (build and run the `Trainer` inside
/// `rayon::scope(|_| ...)`, as the `noprop` binary and
/// `examples/train_small.rs` do): from any other thread each op is injected
/// into the pool while the calling thread sleeps on a lock, a wake-up and a
/// sleep per op. The numbers do not change, only the time (a one-epoch
/// adjoint run on 8k digits: 9.9–13.0 s from the main thread, 8.2–10.4 s
/// from a worker; docs/PERFORMANCE.md, round 9).
pub struct Trainer {
    config: TrainConfig,
    observers: Vec<Box<dyn Observer>>,
    comm: Rc<dyn Communicator>,
    /// Every rank's device, in rank order (a distributed run's result).
    rank_devices: Vec<String>,
}

impl Trainer {
    /// Check the configuration ([`TrainConfig::validate`]).
    pub fn new(config: TrainConfig) -> Result<Self> {
        config.validate()?;
        Ok(Trainer {
            config,
            observers: Vec::new(),
            comm: Rc::new(SingleProcess::new()),
            rank_devices: Vec::new(),
        })
    }

    /// Run as one rank of `comm`'s group (default: a single process). With
    /// more than one rank, `distributed` must say how the run is spread.
    pub fn communicator(mut self, comm: Rc<dyn Communicator>) -> Result<Self> {
        if comm.size() > 1 && self.config.distributed.is_none() {
            return Err(Error::config(format!(
                "started as one of {} ranks ({}) without --distributed: say block or data, or start one process",
                comm.size(),
                comm.describe()
            )));
        }
        self.comm = comm;
        Ok(self)
    }

    /// Every rank's device (`cpu`, `cuda:N`), in rank order.
    fn gather_devices(&self, device: &Device) -> Result<Vec<String>> {
        let all = self.comm.all_gather_bytes(device.to_string().as_bytes())?;
        Ok(all
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect())
    }

    /// Add an observer of the run's events.
    pub fn observe(mut self, observer: impl Observer + 'static) -> Self {
        self.observers.push(Box::new(observer));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    fn emit(&mut self, e: Event<'_>) -> Result<()> {
        if !self.comm.is_root() {
            return Ok(());
        }
        for o in &mut self.observers {
            o.on_event(&e)?;
        }
        Ok(())
    }

    /// Load the data, build (or resume) the model, train for the requested
    /// epochs with checkpoints at every epoch end and every
    /// `checkpoint_every` mini-batches, evaluate, and write the JSON result
    /// to `results_dir/<run name>.json`.
    pub fn fit(mut self) -> Result<TrainReport> {
        let started = Instant::now();
        let c = self.config.clone();
        let (device, why) = c.device.open_for_rank(self.comm.local_rank())?;
        let device = rank_stream(device, self.comm.size())?;
        info!("device: {why}");
        if self.comm.size() > 1 {
            self.rank_devices = self.gather_devices(&device)?;
            info!("devices of the ranks: {}", self.rank_devices.join(", "));
        }
        let mut s = setup(&c)?;
        let resumed = c.resume && s.ckpt.exists();
        let (mut model, progress) = methods::for_training(&c, &s, &self.comm)?;
        s.initial_image_embedding =
            methods::initial_image_embedding(&c, &s, model.as_ref(), resumed)?;
        info!(
            "{} on {}, batch {}",
            c.method,
            c.dataset.as_str(),
            c.batch_size
        );
        // Every method runs where `--device` (or `auto`'s choice) says; a
        // method that cannot is an error, never a silent per-method fallback.
        model.to_device(&device)?;
        self.run(&c, s, model.as_mut(), progress, &device, started)
    }

    fn run(
        &mut self,
        c: &TrainConfig,
        s: Setup,
        model: &mut dyn Method,
        progress: Progress,
        device: &Device,
        started: Instant,
    ) -> Result<TrainReport> {
        info!("{}", model.describe());
        let n_train = s.data.train.len();
        let train_eval = if c.train_eval_limit > 0 && c.train_eval_limit < n_train {
            let idx = s
                .data
                .train
                .class_balanced_indices(c.train_eval_limit.div_ceil(s.classes), Some(c.seed))?;
            s.data
                .train
                .subset(&idx[..c.train_eval_limit.min(idx.len())])?
        } else {
            s.data.train.clone()
        };
        let multi = model.passes().is_some();
        let mut r = Run {
            c,
            s: &s,
            device,
            passes: model.passes().unwrap_or(1),
            multi,
            model,
            batches_per_pass: n_train.div_ceil(c.batch_size),
            cumulative: progress.train_seconds,
            progress,
            done_this_run: 0,
            buf: BatchBuf::new(),
        };
        // Heap high-water mark over the training mini-batches only
        // (evaluation, with its larger batches, excluded), and the live heap
        // (data, model, optimiser) before training starts.
        let live_before_training = memory::live_heap_bytes();
        let mut peak_train = 0usize;
        self.emit(Event::Started {
            epoch: r.progress.epoch + 1,
            epochs: c.epochs,
        })?;
        while r.progress.epoch < c.epochs {
            memory::reset_window();
            let Some(trained) = self.train_epoch(&mut r)? else {
                return Ok(TrainReport {
                    test_accuracy: None,
                    history: r.progress.history,
                    checkpoint: s.ckpt.clone(),
                    result_path: None,
                    result: Value::Null,
                });
            };
            peak_train = peak_train.max(memory::window_peak_bytes());
            let m = self.evaluate_epoch(&mut r, &train_eval, trained)?;
            self.emit(Event::EpochFinished { metrics: &m })?;
        }

        // Final test accuracy over the requested stochastic inference runs.
        let t_inf = Instant::now();
        let mut runs = Vec::new();
        for k in 0..c.inference_runs.max(1) {
            let key = 1_000_000 + k as u64;
            runs.push(self.accuracy(&mut r, &s.data.test, key, Phase::Final)?);
        }
        let inference_seconds = t_inf.elapsed().as_secs_f64() / runs.len() as f64;
        let test_accuracy = runs.iter().sum::<f64>() / runs.len() as f64;
        let results_path = c.results_dir.join(format!("{}.json", c.run_name()));
        let mut result = serde_json::json!({
            "method": c.method.as_str(),
            "dataset": c.dataset.as_str(),
            "embedding": s.embedding.to_string(),
            "embedding_init": s.embedding_init.map(|i| i.to_string()),
            "epochs": c.epochs,
            "seed": c.seed,
            "test_accuracy": test_accuracy,
            "test_accuracy_runs": runs,
            "train_accuracy": r.progress.history.last().map_or(0.0, |m| m.train_accuracy),
            "train_accuracy_subset": train_eval.len(),
            "wall_seconds": started.elapsed().as_secs_f64(),
            "train_seconds": r.cumulative,
            "images_per_second": (n_train * r.passes * c.epochs) as f64 / r.cumulative.max(1e-9),
            "inference_seconds": inference_seconds,
            "peak_memory_bytes": memory::peak_heap_bytes(),
            "peak_rss_bytes": memory::peak_rss_bytes(),
            "peak_train_memory_bytes": peak_train,
            "live_memory_before_training_bytes": live_before_training,
            "result_path": results_path.display().to_string(),
            "checkpoint": s.ckpt.display().to_string(),
            "batch_size": c.batch_size,
            "train_images": n_train,
            "test_images": s.data.test.len(),
            "data_source": s.data.source.display().to_string(),
            "device": device.to_string(),
            "peak_device_memory_bytes": device.peak_memory_bytes(),
            "git_revision": git_revision(),
            "host": host_info(),
            "per_epoch": r.progress.history,
            "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        });
        if let Value::Object(obj) = &mut result {
            obj.extend(r.model.result_fields());
            if !self.rank_devices.is_empty() {
                obj.insert("rank_devices".into(), self.rank_devices.clone().into());
            }
            if let Some(png) = self.write_prototypes(&r, c)? {
                obj.insert("prototypes_png".into(), png.display().to_string().into());
            }
        }
        if self.comm.is_root() {
            write_json(&results_path, &result)?;
        }
        info!(
            "test accuracy {:.4} ({:.1}s per inference run){}",
            test_accuracy,
            inference_seconds,
            if self.comm.is_root() {
                format!(" — result written to {}", results_path.display())
            } else {
                String::new()
            }
        );
        self.emit(Event::Finished { test_accuracy })?;
        Ok(TrainReport {
            test_accuracy: Some(test_accuracy),
            history: r.progress.history,
            checkpoint: s.ckpt.clone(),
            result_path: Some(results_path),
            result,
        })
    }

    /// With an image-dimension embedding, `<results>/<run>.prototypes.png`:
    /// the initial class embeddings above the learned ones.
    fn write_prototypes(&self, r: &Run<'_>, c: &TrainConfig) -> Result<Option<PathBuf>> {
        let (Some(initial), Some(w)) = (&r.s.initial_image_embedding, r.model.embedding_weight())
        else {
            return Ok(None);
        };
        let path = c
            .results_dir
            .join(format!("{}.prototypes.png", c.run_name()));
        let learned = w.try_to_vec_f32()?;
        crate::prototypes::write_png(&path, initial, &learned, r.s.classes, r.s.image)?;
        info!(
            "initial and learned class embeddings drawn in {}",
            path.display()
        );
        Ok(Some(path))
    }

    /// Train the rest of the epoch in progress (resuming mid-epoch or
    /// mid-pass), checkpointing on the cadence. `None`: stopped as asked by
    /// `stop_after` (checkpoint written).
    fn train_epoch(&mut self, r: &mut Run<'_>) -> Result<Option<EpochTraining>> {
        let (c, epoch, epochs) = (r.c, r.progress.epoch, r.c.epochs);
        let (data, norm, ckpt) = (&r.s.data, &r.s.norm, r.s.ckpt.as_path());
        let t_epoch = Instant::now();
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        let per_epoch = r.batches_per_pass * r.passes;
        let first_pass = r.progress.block.max(1);
        let mut done = (first_pass - 1) * r.batches_per_pass + r.progress.batch;
        self.emit(Event::EpochStarted {
            epoch: epoch + 1,
            epochs,
            batches: per_epoch,
            done,
        })?;
        for pass in first_pass..=r.passes {
            let mut batches = data.train.batches(
                BatchOptions::new(c.batch_size)
                    .shuffle(c.seed)
                    .epoch((epoch * r.passes + pass - 1) as u64)
                    .normalize(norm.clone()),
            )?;
            let mut bi = 0usize;
            while batches.next_into(&mut r.buf) {
                if bi < r.progress.batch {
                    bi += 1;
                    continue;
                }
                let (x, y) = to_tensor(&r.buf)?;
                let x = x.to_device(r.device)?;
                let (l, n) = r.model.train_batch(&x, &y, epoch, pass)?;
                if !l.is_finite() {
                    return Err(Error::NonFiniteLoss {
                        method: r.model.method().to_string(),
                        epoch: epoch + 1,
                        batch: bi + 1,
                        step: r.model.step(),
                        loss: l,
                    });
                }
                loss_sum += l;
                loss_n += n;
                bi += 1;
                done += 1;
                r.progress.batch = bi;
                r.progress.block = if r.multi { pass } else { 0 };
                r.done_this_run += 1;
                self.emit(Event::Batch {
                    epoch: epoch + 1,
                    epochs,
                    done,
                    batches: per_epoch,
                    loss: l / n.max(1) as f64,
                })?;
                let stop = c.stop_after == Some(r.done_this_run);
                if stop || (c.checkpoint_every > 0 && r.model.step() % c.checkpoint_every == 0) {
                    r.progress.train_seconds = r.cumulative + t_epoch.elapsed().as_secs_f64();
                    self.save_ckpt(r.model, ckpt, &r.progress, norm)?;
                }
                if stop {
                    info!(
                        "stopping after {} mini-batches as asked (--stop-after); checkpoint {}",
                        r.done_this_run,
                        ckpt.display()
                    );
                    return Ok(None);
                }
            }
            r.progress.batch = 0;
            r.progress.block = if r.multi { pass + 1 } else { 0 };
        }
        r.device.synchronize()?;
        let seconds = t_epoch.elapsed().as_secs_f64();
        r.cumulative += seconds;
        Ok(Some(EpochTraining {
            loss: loss_sum / loss_n.max(1) as f64,
            seconds,
        }))
    }

    /// The per-epoch test and train accuracies; records the epoch's metrics
    /// and writes the epoch-end checkpoint.
    fn evaluate_epoch(
        &mut self,
        r: &mut Run<'_>,
        train_eval: &Dataset,
        trained: EpochTraining,
    ) -> Result<EpochMetrics> {
        let epoch = r.progress.epoch;
        let ev = Instant::now();
        // Every rank holds the whole model and the same shared state.
        r.model.synchronize()?;
        if let Some(d) = r.model.shared_digest()? {
            self.comm
                .check_same(d, &format!("shared parameters after epoch {}", epoch + 1))?;
        }
        let test = &r.s.data.test;
        let test_acc = self.accuracy(r, test, 1 + epoch as u64, Phase::Epoch)?;
        let train_acc = self.accuracy(r, train_eval, 1_000 + epoch as u64, Phase::Epoch)?;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: trained.loss,
            train_accuracy: train_acc,
            test_accuracy: test_acc,
            train_seconds: trained.seconds,
            cumulative_train_seconds: r.cumulative,
            images_per_second: (r.s.data.train.len() * r.passes) as f64 / trained.seconds,
        };
        info!(
            "epoch {}/{}: loss {:.4}, train acc {:.4}, test acc {:.4}, {:.1}s ({:.0} img/s), eval {:.1}s{}",
            epoch + 1,
            r.c.epochs,
            m.train_loss,
            train_acc,
            test_acc,
            trained.seconds,
            m.images_per_second,
            ev.elapsed().as_secs_f64(),
            r.model.epoch_note()
        );
        r.progress.history.push(m.clone());
        r.progress.epoch += 1;
        r.progress.block = 0;
        r.progress.batch = 0;
        r.progress.train_seconds = r.cumulative;
        self.save_ckpt(r.model, &r.s.ckpt, &r.progress, &r.s.norm)?;
        Ok(m)
    }

    /// Accuracy of the model on `data` (the run's normalisation), reporting
    /// evaluation progress to the observers.
    fn accuracy(&mut self, r: &mut Run<'_>, data: &Dataset, key: u64, phase: Phase) -> Result<f64> {
        let epochs = r.c.epochs;
        let epoch = match phase {
            Phase::Epoch => r.progress.epoch + 1,
            Phase::Final => epochs,
        };
        let batches = data.len().div_ceil(EVAL_BATCH);
        self.emit(Event::EvalStarted {
            phase,
            epoch,
            epochs,
            batches,
        })?;
        let mut failed = None;
        let observers = &mut self.observers;
        let (model, device) = (&mut *r.model, r.device);
        let acc = accuracy_with(
            data,
            &r.s.norm,
            key,
            |x, k| model.predict(&x.to_device(device)?, k, phase),
            |done, batches| {
                let e = Event::EvalBatch {
                    phase,
                    epoch,
                    epochs,
                    done,
                    batches,
                };
                for o in observers.iter_mut() {
                    if let Err(err) = o.on_event(&e) {
                        failed.get_or_insert(err);
                    }
                }
            },
        )?;
        match failed {
            Some(e) => Err(e),
            None => Ok(acc),
        }
    }
}

/// A run in progress: the model, where it stands, and what stays fixed.
struct Run<'a> {
    c: &'a TrainConfig,
    s: &'a Setup,
    device: &'a Device,
    model: &'a mut dyn Method,
    progress: Progress,
    /// Passes over the data per epoch (NoProp-DT `--order paper`: T).
    passes: usize,
    /// Whether the method makes several passes (recorded in `progress.block`).
    multi: bool,
    batches_per_pass: usize,
    /// Training seconds so far, earlier invocations included.
    cumulative: f64,
    /// Mini-batches trained by this invocation (for `stop_after`).
    done_this_run: u64,
    buf: BatchBuf,
}

/// What training one epoch produced.
#[derive(Clone, Copy)]
struct EpochTraining {
    /// Mean of the loss values.
    loss: f64,
    /// Training seconds of the epoch (this invocation's part).
    seconds: f64,
}

/// Check the device, load the data, and create the run's checkpoint folder.
/// A rank's own handle on its GPU when the run has several ranks: a stream
/// (and cuBLAS handle) of its own, so that ranks sharing a GPU — threads of
/// one process ([`crate::comm::LocalGroup`]) or processes — never launch on
/// one stream from two threads. A single process keeps the default stream.
fn rank_stream(device: Device, ranks: usize) -> Result<Device> {
    match device {
        Device::Cuda(d) if ranks > 1 => Ok(Device::Cuda(d.new_stream()?)),
        other => Ok(other),
    }
}

fn setup(c: &TrainConfig) -> Result<Setup> {
    let mut data = load_data(c.dataset, &c.data_dir, c.verify)?;
    if c.limit_train > 0 && c.limit_train < data.train.len() {
        data.train = data.train.slice(0..c.limit_train)?;
    }
    if c.limit_test > 0 && c.limit_test < data.test.len() {
        data.test = data.test.slice(0..c.limit_test)?;
    }
    let norm = data.normalization();
    let shape = data.train.shape();
    let image = (shape.channels, shape.height, shape.width);
    let classes = data.train.num_classes();
    let ckpt = c.checkpoint_path();
    if let Some(dir) = ckpt.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(Setup {
        data,
        norm,
        image,
        classes,
        embedding: c.embedding,
        embedding_init: c.embedding_init.map(Into::into),
        ckpt,
        initial_image_embedding: None,
    })
}

impl Trainer {
    /// Every rank synchronises the model; rank 0 writes the checkpoint.
    fn save_ckpt(
        &self,
        model: &mut dyn Method,
        path: &Path,
        progress: &Progress,
        norm: &Normalization,
    ) -> Result<()> {
        model.synchronize()?;
        if self.comm.is_root() {
            save_ckpt(model, path, progress, norm)?;
        }
        Ok(())
    }
}

fn save_ckpt(
    model: &mut dyn Method,
    path: &Path,
    progress: &Progress,
    norm: &Normalization,
) -> Result<()> {
    let json = serde_json::to_string(progress).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        why: format!("cannot encode the progress: {e}"),
    })?;
    let meta = HashMap::from([
        (PROGRESS_KEY.to_string(), json),
        (NORMALIZATION_KEY.to_string(), normalization_json(norm)),
    ]);
    model.save(path, meta)
}

/// Write `value` as pretty JSON to `path` atomically (a temporary file, then a rename).
pub(crate) fn write_json(path: &Path, value: &Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        why: format!("cannot encode the result: {e}"),
    })?;
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
