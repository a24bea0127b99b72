//! `noprop train --method backprop|adjoint` and `noprop eval` of their
//! checkpoints: the baselines of `noprop-baselines` on the shared loop of
//! `driver.rs` (same JSON results, checkpoints and `--resume` guarantees as
//! NoProp).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use noprop_baselines::{Adjoint, AdjointConfig, AdjointStats, Backprop, BackpropConfig};
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

/// The adjoint neural ODE on the shared loop.
struct Adj {
    model: Adjoint,
    /// Euler steps of the per-epoch evaluations.
    epoch_steps: usize,
    /// Euler steps of the final evaluation (and `noprop eval`).
    final_steps: usize,
    /// The epoch the recovery statistics below describe.
    epoch: usize,
    /// Mini-batches, network evaluations spent recovering states, largest
    /// residual, largest `z_0` drift and unconverged steps in that epoch.
    batches: usize,
    recovery: AdjointStats,
}

impl Method for Adj {
    fn name(&self) -> String {
        "adjoint".into()
    }

    fn embedding(&self) -> EmbeddingKind {
        self.model.embedding_kind()
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
        let l = self.model.train_batch(x, y, epoch)?;
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches = 0;
            self.recovery = AdjointStats::default();
        }
        let s = self.model.last_stats;
        let r = &mut self.recovery;
        self.batches += 1;
        r.evaluations += s.evaluations;
        r.max_residual = r.max_residual.max(s.max_residual);
        r.z0_drift = r.z0_drift.max(s.z0_drift);
        r.unconverged += s.unconverged;
        Ok((l, 1))
    }

    fn predict(&mut self, x: &Tensor, key: u64, phase: Phase) -> Result<Vec<usize>> {
        let steps = match phase {
            Phase::Epoch => self.epoch_steps,
            Phase::Final => self.final_steps,
        };
        Ok(self.model.predict(x, steps, key)?)
    }

    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        Ok(self.model.save(path, meta)?)
    }

    fn describe(&mut self) -> String {
        format!(
            "adjoint: {} network params, one-hot, {} Euler steps for training, {} for inference ({} per epoch), discrete adjoint with states recovered by inverting the Euler steps",
            self.model.num_params(),
            self.model.config.steps,
            self.final_steps,
            self.epoch_steps
        )
    }

    fn epoch_note(&self) -> String {
        let r = &self.recovery;
        let per_state =
            r.evaluations as f64 / (self.batches.max(1) * self.model.config.steps) as f64;
        format!(
            "; state recovery {per_state:.2} evaluations/step, max residual {:.1e}, max z0 drift {:.1e}, {} unconverged",
            r.max_residual, r.z0_drift, r.unconverged
        )
    }

    fn result_fields(&self) -> Map<String, Value> {
        let r = &self.recovery;
        let mut m = Map::new();
        m.insert("config".into(), serde_json::json!(self.model.config));
        m.insert("train_steps".into(), self.model.config.steps.into());
        m.insert("inference_steps".into(), self.final_steps.into());
        m.insert("eval_steps".into(), self.epoch_steps.into());
        m.insert(
            "last_epoch_state_recovery".into(),
            serde_json::json!({
                "evaluations_per_step": r.evaluations as f64 / (self.batches.max(1) * self.model.config.steps) as f64,
                "max_residual": r.max_residual,
                "max_z0_drift": r.z0_drift,
                "unconverged_steps": r.unconverged,
            }),
        );
        m
    }

    fn eval_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("inference_steps".into(), self.final_steps.into());
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
        "adjoint" => train_adjoint(a),
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

fn train_adjoint(a: TrainArgs) -> Result<()> {
    if a.embedding.parse::<EmbeddingKind>()? != EmbeddingKind::OneHot {
        bail!("the adjoint baseline uses the one-hot embedding only (as in the paper)");
    }
    let s = driver::setup(&a)?;
    let mut cfg = AdjointConfig::paper(s.image, s.classes, a.seed);
    cfg.steps = a.steps.unwrap_or(1000);
    cfg.lr = a.lr;
    cfg.weight_decay = a.weight_decay;
    let steps = cfg.steps;
    let (model, progress) = driver::resume_or_new(
        &a,
        &s.ckpt,
        &cfg,
        |p| Ok(Adjoint::load(p)?),
        |m: &Adjoint| &m.config,
        |m| m.step,
        || Ok(Adjoint::new(cfg.clone())?),
    )?;
    info!("adjoint on {}, batch {}", s.ds.as_str(), a.batch_size);
    let run = Adj {
        model,
        epoch_steps: a.eval_steps.unwrap_or(steps),
        final_steps: steps,
        epoch: progress.epoch,
        batches: 0,
        recovery: AdjointStats::default(),
    };
    driver::train_loop(&a, s, run, progress)
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
        Some("adjoint") => {
            let (model, meta) = Adjoint::load(&a.checkpoint)
                .with_context(|| format!("loading {}", a.checkpoint.display()))?;
            let steps = a.steps.unwrap_or(model.config.steps);
            let run = Adj {
                model,
                epoch_steps: steps,
                final_steps: steps,
                epoch: 0,
                batches: 0,
                recovery: AdjointStats::default(),
            };
            driver::eval_loop(&a, run, &meta, started)
        }
        m => bail!(
            "{}: not a baseline checkpoint (method {m:?})",
            a.checkpoint.display()
        ),
    }
}
