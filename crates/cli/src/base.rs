//! `noprop train --method backprop|adjoint` and `noprop eval` of their
//! checkpoints: the baselines of `noprop-baselines` on the shared loop of
//! `driver.rs` (same JSON results, checkpoints and `--resume` guarantees as
//! NoProp).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use noprop_baselines::{Backprop, BackpropConfig};
use noprop_models::EmbeddingKind;
use noprop_tensor::Tensor;
use serde_json::{Map, Value};
use tracing::info;

use crate::driver::{self, Method, Phase};
use crate::run::{on_off, EvalArgs, TrainArgs};

/// The back-propagation baseline (Eqs. 17–19) on the shared loop.
struct Bp {
    model: Backprop,
}

impl Method for Bp {
    fn name(&self) -> String {
        "backprop".into()
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
        Ok((self.model.train_batch(x, y, epoch)?, 1))
    }

    fn predict(&mut self, x: &Tensor, key: u64, _phase: Phase) -> Result<Vec<usize>> {
        Ok(self.model.predict(x, key)?)
    }

    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        Ok(self.model.save(path, meta)?)
    }

    fn describe(&mut self) -> String {
        let c = &self.model.config;
        format!(
            "backprop: T = {} blocks trained end to end, embedding {}, α_1 = {:.3}",
            c.steps,
            c.embedding,
            self.model.alpha(1)
        )
    }

    fn epoch_note(&self) -> String {
        let t = self.model.config.steps;
        format!(
            ", α_1 {:.3} α_T {:.3}",
            self.model.alpha(1),
            self.model.alpha(t)
        )
    }

    fn result_fields(&self) -> Map<String, Value> {
        let alphas: Vec<f64> = (1..=self.model.config.steps)
            .map(|t| self.model.alpha(t))
            .collect();
        let mut m = Map::new();
        m.insert("config".into(), serde_json::json!(self.model.config));
        m.insert("alpha".into(), serde_json::json!(alphas));
        m
    }
}

/// Reject the flags that belong to other methods.
fn check_flags(a: &TrainArgs) -> Result<()> {
    if a.order != "batch" || a.classifier != "softmax" || a.embed_grad != "all" {
        bail!("--order, --classifier and --embed-grad apply to noprop-dt only");
    }
    if a.sampler.is_some() || a.eta.is_some() {
        bail!("--sampler and --eta do not apply to {}", a.method);
    }
    if !on_off(&a.inference_noise)? {
        bail!(
            "{} always starts inference from z_0 ~ N(0, I): --inference-noise off is not supported",
            a.method
        );
    }
    Ok(())
}

/// `noprop train --method backprop|adjoint`.
pub(crate) fn train(a: TrainArgs) -> Result<()> {
    check_flags(&a)?;
    match a.method.as_str() {
        "backprop" => train_backprop(a),
        m => bail!("not a baseline: `{m}` (backprop or adjoint)"),
    }
}

fn train_backprop(a: TrainArgs) -> Result<()> {
    if a.eval_steps.is_some() {
        bail!("--eval-steps does not apply to backprop");
    }
    let s = driver::setup(&a)?;
    let mut cfg = BackpropConfig::paper(s.image, s.classes, s.embedding, a.seed);
    cfg.steps = a.steps.unwrap_or(10);
    cfg.lr = a.lr;
    cfg.weight_decay = a.weight_decay;
    let (model, progress) = driver::resume_or_new(
        &a,
        &s.ckpt,
        &cfg,
        |p| Ok(Backprop::load(p)?),
        |m: &Backprop| &m.config,
        |m| m.step,
        || {
            Ok(Backprop::new(
                cfg.clone(),
                driver::new_embedding(&s, a.seed)?,
            )?)
        },
    )?;
    info!("backprop on {}, batch {}", s.ds.as_str(), a.batch_size);
    driver::train_loop(&a, s, Bp { model }, progress)
}

/// `noprop eval` of a backprop or adjoint checkpoint.
pub(crate) fn eval(a: EvalArgs) -> Result<()> {
    let started = Instant::now();
    if !on_off(&a.inference_noise)? {
        bail!("the baselines always start inference from z_0 ~ N(0, I): --inference-noise off is not supported");
    }
    if a.sampler.is_some() {
        bail!("--sampler applies to noprop-ct and noprop-fm checkpoints only");
    }
    match driver::checkpoint_method(&a.checkpoint)?.as_deref() {
        Some("backprop") => {
            if a.steps.is_some() {
                bail!("--steps does not apply to a backprop checkpoint (T is fixed by training)");
            }
            let (model, meta) = Backprop::load(&a.checkpoint)
                .with_context(|| format!("loading {}", a.checkpoint.display()))?;
            driver::eval_loop(&a, Bp { model }, &meta, started)
        }
        m => bail!(
            "{}: not a baseline checkpoint (method {m:?})",
            a.checkpoint.display()
        ),
    }
}
