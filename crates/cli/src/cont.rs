//! `noprop train --method noprop-ct|noprop-fm` and `noprop eval` of their
//! checkpoints: the same JSON results, checkpoints and `--resume` guarantees
//! as NoProp-DT (the shared loop of `driver.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use noprop_models::{ContConfig, ContMethod, EmbeddingKind, NoPropCont, Sampler};
use noprop_tensor::Tensor;
use serde_json::{Map, Value};
use tracing::info;

use crate::driver::{self, Method, Phase};
use crate::run::{on_off, EvalArgs, TrainArgs};

/// Inference options of a CT/FM evaluation.
#[derive(Clone, Copy, Debug)]
struct Infer {
    sampler: Sampler,
    steps: usize,
    noise: bool,
    cached: bool,
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

/// NoProp-CT/FM on the shared loop.
struct Cont {
    model: NoPropCont,
    /// Inference of the per-epoch evaluations.
    epoch_inf: Infer,
    /// Inference of the final evaluation (and `noprop eval`).
    final_inf: Infer,
}

impl Method for Cont {
    fn name(&self) -> String {
        self.model.config.method.name().into()
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

    fn train_batch(
        &mut self,
        x: &Tensor,
        y: &[usize],
        epoch: usize,
        _pass: usize,
    ) -> Result<(f64, usize)> {
        Ok((self.model.train_batch(x, y, epoch)?.total(), 1))
    }

    fn predict(&mut self, x: &Tensor, key: u64, phase: Phase) -> Result<Vec<usize>> {
        let inf = match phase {
            Phase::Epoch => self.epoch_inf,
            Phase::Final => self.final_inf,
        };
        let z = self
            .model
            .sample(x, inf.sampler, inf.steps, inf.noise, key, inf.cached)?;
        Ok(self.model.classify(&z)?)
    }

    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        Ok(self.model.save(path, meta)?)
    }

    fn describe(&mut self) -> String {
        let (f, e) = (self.final_inf, self.epoch_inf);
        format!(
            "{}: {} network params, embedding {}, inference {} × {} ({} per epoch)",
            self.name(),
            self.model.num_params(),
            self.model.config.embedding,
            f.sampler,
            f.steps,
            e.steps
        )
    }

    fn epoch_note(&self) -> String {
        let sched = self
            .model
            .schedule
            .as_ref()
            .map(|s| format!(", γ0 {:.3} γ1 {:.3}", s.gamma0(), s.gamma1()))
            .unwrap_or_default();
        format!(" (eval {} steps){sched}", self.epoch_inf.steps)
    }

    fn result_fields(&self) -> Map<String, Value> {
        let (f, e) = (self.final_inf, self.epoch_inf);
        let s = self.model.schedule.as_ref();
        let mut m = Map::new();
        m.insert("config".into(), serde_json::json!(self.model.config));
        m.insert("sampler".into(), f.sampler.to_string().into());
        m.insert("inference_steps".into(), f.steps.into());
        m.insert("eval_steps".into(), e.steps.into());
        m.insert("image_cache".into(), f.cached.into());
        m.insert("inference_noise".into(), f.noise.into());
        m.insert(
            "schedule_gamma0".into(),
            serde_json::json!(s.map(|s| s.gamma0())),
        );
        m.insert(
            "schedule_gamma1".into(),
            serde_json::json!(s.map(|s| s.gamma1())),
        );
        m
    }

    fn eval_fields(&self) -> Map<String, Value> {
        let f = self.final_inf;
        let mut m = Map::new();
        m.insert("sampler".into(), f.sampler.to_string().into());
        m.insert("inference_steps".into(), f.steps.into());
        m.insert("image_cache".into(), f.cached.into());
        m
    }
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
    let s = driver::setup(&a)?;
    let mut cfg = ContConfig::paper(method, s.image, s.classes, s.embedding, a.seed);
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
    let final_inf = Infer {
        sampler,
        steps,
        noise: on_off(&a.inference_noise)?,
        cached: on_off(&a.image_cache)?,
    };
    let epoch_inf = Infer {
        steps: a.eval_steps.unwrap_or(steps),
        ..final_inf
    };
    let (model, progress) = driver::resume_or_new(
        &a,
        &s.ckpt,
        &cfg,
        |p| Ok(NoPropCont::load(p)?),
        |m: &NoPropCont| &m.config,
        |m| m.step,
        || {
            Ok(NoPropCont::new(
                cfg.clone(),
                driver::new_embedding(&s, a.seed)?,
            )?)
        },
    )?;
    info!("{} on {}, batch {}", a.method, s.ds.as_str(), a.batch_size);
    let run = Cont {
        model,
        epoch_inf,
        final_inf,
    };
    driver::train_loop(&a, s, run, progress)
}

/// `noprop eval` of a NoProp-CT/FM checkpoint.
pub(crate) fn eval(a: EvalArgs) -> Result<()> {
    let started = Instant::now();
    let (model, meta) = NoPropCont::load(&a.checkpoint)
        .with_context(|| format!("loading {}", a.checkpoint.display()))?;
    let inf = Infer {
        sampler: sampler_for(model.config.method, &a.sampler)?,
        steps: a.steps.unwrap_or(1000),
        noise: on_off(&a.inference_noise)?,
        cached: on_off(&a.image_cache)?,
    };
    let run = Cont {
        model,
        epoch_inf: inf,
        final_inf: inf,
    };
    driver::eval_loop(&a, run, &meta, started)
}
