//! The adjoint-sensitivity neural ODE on the shared loop.

use std::collections::HashMap;
use std::path::Path;

use noprop_baselines::{Adjoint, AdjointConfig, AdjointStats};
use noprop_models::EmbeddingKind;
use noprop_tensor::{Device, Tensor};
use serde_json::{Map, Value};

use crate::config::TrainConfig;
use crate::error::Result;
use crate::method::{Method, Phase};
use crate::options::MethodName;

/// The adjoint baseline with its evaluation step counts and the state
/// recovery statistics of the epoch in progress.
pub struct Adj {
    /// The model.
    pub model: Adjoint,
    /// Euler steps of the per-epoch evaluations.
    pub epoch_steps: usize,
    /// Euler steps of the final evaluation (and `noprop eval`).
    pub final_steps: usize,
    /// The epoch the recovery statistics below describe.
    epoch: usize,
    /// Mini-batches in that epoch.
    batches: usize,
    /// Network evaluations spent recovering states, largest residual,
    /// largest `z_0` drift and unconverged steps in that epoch.
    recovery: AdjointStats,
}

impl Adj {
    /// Wrap `model`; `epoch` is the epoch training starts in.
    pub fn new(model: Adjoint, epoch_steps: usize, final_steps: usize, epoch: usize) -> Self {
        Adj {
            model,
            epoch_steps,
            final_steps,
            epoch,
            batches: 0,
            recovery: AdjointStats::default(),
        }
    }

    fn evaluations_per_step(&self) -> f64 {
        self.recovery.evaluations as f64 / (self.batches.max(1) * self.model.config.steps) as f64
    }
}

/// The model configuration a training run asks for.
pub fn config(c: &TrainConfig, image: (usize, usize, usize), classes: usize) -> AdjointConfig {
    let mut cfg = AdjointConfig::paper(image, classes, c.seed);
    cfg.steps = c.steps.unwrap_or(1000);
    cfg.lr = c.lr;
    cfg.weight_decay = c.weight_decay;
    cfg
}

impl Method for Adj {
    fn state_dict(&mut self) -> Option<&mut dyn noprop_nn::state::StateDict> {
        Some(&mut self.model)
    }

    fn method(&self) -> MethodName {
        MethodName::Adjoint
    }

    fn to_device(&mut self, device: &Device) -> Result<()> {
        Ok(self.model.to_device(device)?)
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
        format!(
            "; state recovery {:.2} evaluations/step, max residual {:.1e}, max z0 drift {:.1e}, {} unconverged",
            self.evaluations_per_step(),
            r.max_residual,
            r.z0_drift,
            r.unconverged
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
                "evaluations_per_step": self.evaluations_per_step(),
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
