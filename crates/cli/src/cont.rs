//! `noprop train --method noprop-ct|noprop-fm` and `noprop eval` of their
//! checkpoints: the same JSON results, checkpoints and `--resume` guarantees
//! as NoProp-DT (see `run.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use noprop_datasets::{BatchBuf, BatchOptions, Dataset, Normalization};
use noprop_models::{ClassEmbedding, ContConfig, ContMethod, EmbeddingKind, NoPropCont, Sampler};
use tracing::info;

use crate::alloc;
use crate::run::{
    accuracy_with, bar, flat_images, git_revision, host_info, load_data, on_off, to_tensor,
    EpochMetrics, EvalArgs, Progress, TrainArgs,
};

/// Whether `path` is a NoProp-CT/FM checkpoint (by its `method` metadata).
pub(crate) fn is_cont_checkpoint(path: &Path) -> Result<bool> {
    let (_, meta) =
        noprop_nn::io::load(path).with_context(|| format!("loading {}", path.display()))?;
    Ok(matches!(
        meta.get("method").map(String::as_str),
        Some("noprop-ct" | "noprop-fm")
    ))
}

fn save_ckpt(model: &mut NoPropCont, path: &Path, progress: &Progress) -> Result<()> {
    let meta = HashMap::from([("progress".to_string(), serde_json::to_string(progress)?)]);
    model
        .save(path, meta)
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

/// Inference options of a CT/FM evaluation.
#[derive(Clone, Copy, Debug)]
struct Infer {
    sampler: Sampler,
    steps: usize,
    noise: bool,
    cached: bool,
}

fn cont_accuracy(
    model: &mut NoPropCont,
    data: &Dataset,
    norm: &Normalization,
    inf: Infer,
    key: u64,
) -> Result<f64> {
    accuracy_with(data, norm, key, |x, k| {
        let z = model.sample(x, inf.sampler, inf.steps, inf.noise, k, inf.cached)?;
        Ok(model.classify(&z)?)
    })
}

fn sampler_for(method: ContMethod, s: &Option<String>) -> Result<Sampler> {
    let sampler = match s {
        Some(s) => s.parse::<Sampler>()?,
        None => method.default_sampler(),
    };
    if method == ContMethod::Fm && sampler == Sampler::Ancestral {
        bail!("noprop-fm integrates an ODE: --sampler euler or heun");
    }
    Ok(sampler)
}

/// `noprop train --method noprop-ct|noprop-fm`.
pub(crate) fn train(a: TrainArgs) -> Result<()> {
    let method = match a.method.as_str() {
        "noprop-ct" => ContMethod::Ct,
        "noprop-fm" => ContMethod::Fm,
        m => bail!("not a continuous-time method: `{m}`"),
    };
    if a.order != "batch" || a.classifier != "softmax" || a.embed_grad != "all" {
        bail!("--order, --classifier and --embed-grad apply to noprop-dt only");
    }
    let (device, why) = noprop_tensor::Device::parse(&a.device)?;
    if !device.is_cpu() {
        bail!("device {why} is not supported by this build's training loop yet");
    }
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
    let mut cfg = ContConfig::paper(method, image, classes, embedding, a.seed);
    cfg.eta = a.eta.unwrap_or(1.0);
    cfg.lr = a.lr;
    cfg.weight_decay = a.weight_decay;
    cfg.fm_sigma = a.fm_sigma;
    cfg.anchor_ce = match a.anchor_ce.as_str() {
        "auto" => cfg.anchor_ce,
        s => on_off(s)?,
    };
    let sampler = sampler_for(method, &a.sampler)?;
    let steps = a.steps.unwrap_or(1000);
    let eval_steps = a.eval_steps.unwrap_or(steps);
    let noise = on_off(&a.inference_noise)?;
    let cached = on_off(&a.image_cache)?;
    let final_inf = Infer {
        sampler,
        steps,
        noise,
        cached,
    };
    let epoch_inf = Infer {
        steps: eval_steps,
        ..final_inf
    };
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-{}-s{}", a.method, ds.as_str(), embedding, a.seed));
    let ckpt_dir = a.results_dir.join("checkpoints").join(&name);
    std::fs::create_dir_all(&ckpt_dir)
        .with_context(|| format!("creating {}", ckpt_dir.display()))?;
    let ckpt = ckpt_dir.join("last.safetensors");

    let (mut model, mut progress) = if a.resume && ckpt.exists() {
        let (m, meta) = NoPropCont::load(&ckpt)?;
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
        (NoPropCont::new(cfg.clone(), emb)?, Progress::default())
    };
    info!(
        "{} on {}: {} network params, embedding {}, batch {}, inference {} × {} ({} per epoch)",
        a.method,
        ds.as_str(),
        model.num_params(),
        embedding,
        a.batch_size,
        sampler,
        steps,
        eval_steps
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

    while progress.epoch < a.epochs {
        let epoch = progress.epoch;
        let t_epoch = Instant::now();
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        let pb = bar(
            batches_per_epoch as u64,
            "epoch {msg} {pos}/{len} [{elapsed_precise}<{eta_precise}] {wide_bar} {per_sec}",
        );
        pb.set_message(format!("{}", epoch + 1));
        let mut batches = data.train.batches(
            BatchOptions::new(a.batch_size)
                .shuffle(a.seed)
                .epoch(epoch as u64)
                .normalize(norm.clone()),
        )?;
        let mut bi = 0usize;
        while batches.next_into(&mut buf) {
            if bi < progress.batch {
                bi += 1;
                continue;
            }
            let (x, y) = to_tensor(&buf)?;
            let l = model.train_batch(&x, &y, epoch)?;
            loss_sum += l.total();
            loss_n += 1;
            bi += 1;
            progress.batch = bi;
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
                info!(
                    "stopping after {done_this_run} mini-batches as asked (--stop-after); checkpoint {}",
                    ckpt.display()
                );
                return Ok(());
            }
        }
        pb.finish_and_clear();
        let train_seconds = t_epoch.elapsed().as_secs_f64();
        cumulative += train_seconds;
        let ev = Instant::now();
        let test_acc = cont_accuracy(&mut model, &data.test, &norm, epoch_inf, 1 + epoch as u64)?;
        let train_acc = cont_accuracy(
            &mut model,
            &train_eval,
            &norm,
            epoch_inf,
            1_000 + epoch as u64,
        )?;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / loss_n.max(1) as f64,
            train_accuracy: train_acc,
            test_accuracy: test_acc,
            train_seconds,
            cumulative_train_seconds: cumulative,
            images_per_second: n_train as f64 / train_seconds,
        };
        let sched = model
            .schedule
            .as_ref()
            .map(|s| format!(", γ0 {:.3} γ1 {:.3}", s.gamma0(), s.gamma1()))
            .unwrap_or_default();
        info!(
            "epoch {}/{}: loss {:.4}, train acc {:.4}, test acc {:.4} ({} steps), {:.1}s ({:.0} img/s), eval {:.1}s{}",
            epoch + 1,
            a.epochs,
            m.train_loss,
            train_acc,
            test_acc,
            eval_steps,
            train_seconds,
            m.images_per_second,
            ev.elapsed().as_secs_f64(),
            sched
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

    let t_inf = Instant::now();
    let mut runs = Vec::new();
    for r in 0..a.inference_runs.max(1) {
        runs.push(cont_accuracy(
            &mut model,
            &data.test,
            &norm,
            final_inf,
            1_000_000 + r as u64,
        )?);
    }
    let inference_seconds = t_inf.elapsed().as_secs_f64() / runs.len() as f64;
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
        "images_per_second": (n_train * a.epochs) as f64 / cumulative.max(1e-9),
        "inference_seconds": inference_seconds,
        "sampler": sampler.to_string(),
        "inference_steps": steps,
        "eval_steps": eval_steps,
        "image_cache": cached,
        "schedule_gamma0": model.schedule.as_ref().map(|s| s.gamma0()),
        "schedule_gamma1": model.schedule.as_ref().map(|s| s.gamma1()),
        "peak_memory_bytes": alloc::peak_heap_bytes(),
        "peak_rss_bytes": alloc::peak_rss_bytes(),
        "result_path": results_path.display().to_string(),
        "checkpoint": ckpt.display().to_string(),
        "config": cfg,
        "batch_size": a.batch_size,
        "inference_noise": noise,
        "train_images": n_train,
        "test_images": data.test.len(),
        "data_source": data.source.display().to_string(),
        "device": "cpu",
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
        "test accuracy {:.4} ({} × {}, {:.1}s) — result written to {}",
        test_accuracy,
        sampler,
        steps,
        inference_seconds,
        results_path.display()
    );
    println!("RESULT {}", serde_json::to_string(&result)?);
    Ok(())
}

/// `noprop eval` of a NoProp-CT/FM checkpoint.
pub(crate) fn eval(a: EvalArgs) -> Result<()> {
    let started = Instant::now();
    let (mut model, meta) = NoPropCont::load(&a.checkpoint)
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
    let method = model.config.method;
    let inf = Infer {
        sampler: sampler_for(method, &a.sampler)?,
        steps: a.steps.unwrap_or(1000),
        noise: on_off(&a.inference_noise)?,
        cached: on_off(&a.image_cache)?,
    };
    let t_inf = Instant::now();
    let mut runs = Vec::new();
    for r in 0..a.inference_runs.max(1) {
        runs.push(cont_accuracy(
            &mut model,
            &data.test,
            &norm,
            inf,
            2_000_000 + r as u64,
        )?);
    }
    let inference_seconds = t_inf.elapsed().as_secs_f64() / runs.len() as f64;
    let test_accuracy = runs.iter().sum::<f64>() / runs.len() as f64;
    let result = serde_json::json!({
        "method": method.name(),
        "dataset": ds.as_str(),
        "embedding": model.config.embedding.to_string(),
        "epochs": progress.epoch,
        "seed": model.config.seed,
        "test_accuracy": test_accuracy,
        "test_accuracy_runs": runs,
        "train_accuracy": progress.history.last().map(|m| m.train_accuracy),
        "sampler": inf.sampler.to_string(),
        "inference_steps": inf.steps,
        "image_cache": inf.cached,
        "inference_seconds": inference_seconds,
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
