//! NoProp-CT (Eq. 9) and NoProp-FM (Eqs. 10–13) on the shared loop.

use std::collections::HashMap;
use std::path::Path;

use noprop_models::{ContConfig, ContMethod, EmbeddingKind, NoPropCont, Sampler};
use noprop_tensor::{Device, Tensor};
use serde_json::{Map, Value};

use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::method::{Method, Phase};
use crate::options::{AnchorCe, MethodName, SamplerArg};

/// Inference options of a CT/FM evaluation.
#[derive(Clone, Copy, Debug)]
pub struct Infer {
    /// The sampler.
    pub sampler: Sampler,
    /// Steps over `t ∈ [0, 1]`.
    pub steps: usize,
    /// Fresh noise at inference.
    pub noise: bool,
    /// Run the image path once per image (exact; docs/DECISIONS.md § 17).
    pub cached: bool,
}

/// `requested`, or the method's default sampler; the ancestral sampler is
/// CT's only.
pub fn sampler_for(method: ContMethod, requested: Option<SamplerArg>) -> Result<Sampler> {
    let sampler = requested.map_or(method.default_sampler(), Sampler::from);
    if method == ContMethod::Fm && sampler == Sampler::Ancestral {
        return Err(Error::config(
            "noprop-fm integrates an ODE: --sampler euler or heun",
        ));
    }
    Ok(sampler)
}

/// NoProp-CT/FM with the inference of its per-epoch and final evaluations.
pub struct Cont {
    /// The model.
    pub model: NoPropCont,
    /// Inference of the per-epoch evaluations.
    pub epoch_inf: Infer,
    /// Inference of the final evaluation (and `noprop eval`).
    pub final_inf: Infer,
}

/// The model configuration a training run asks for.
pub fn config(c: &TrainConfig, image: (usize, usize, usize), classes: usize) -> ContConfig {
    let method = match c.method {
        MethodName::NopropFm => ContMethod::Fm,
        _ => ContMethod::Ct,
    };
    let mut cfg = ContConfig::paper(method, image, classes, c.embedding, c.seed);
    cfg.eta = c.eta.unwrap_or(1.0);
    cfg.lr = c.lr;
    cfg.weight_decay = c.weight_decay;
    cfg.fm_sigma = c.fm_sigma.unwrap_or(0.0);
    cfg.anchor_ce = match c.anchor_ce.unwrap_or_default() {
        AnchorCe::Auto => cfg.anchor_ce,
        AnchorCe::On => true,
        AnchorCe::Off => false,
    };
    cfg
}

/// Inference steps of CT/FM's per-epoch evaluations unless `--eval-steps`
/// says otherwise (fewer when `--steps` is smaller): the per-epoch numbers
/// only track progress, and at the paper's 1000 steps they cost several
/// times the training itself (a 10-epoch CT run on 8,000 digits spent
/// 130 s training in 642 s of wall time). The final evaluation keeps
/// `--steps` (1000 by default, as in the paper).
pub const EPOCH_EVAL_STEPS: usize = 100;

/// The per-epoch and final inference options a training run asks for.
pub fn inference(c: &TrainConfig, method: ContMethod) -> Result<(Infer, Infer)> {
    let steps = c.steps.unwrap_or(1000);
    let final_inf = Infer {
        sampler: sampler_for(method, c.sampler)?,
        steps,
        noise: c.inference_noise,
        cached: c.image_cache.unwrap_or(true),
    };
    let epoch_inf = Infer {
        steps: c.eval_steps.unwrap_or(steps.min(EPOCH_EVAL_STEPS)),
        ..final_inf
    };
    Ok((epoch_inf, final_inf))
}

impl Method for Cont {
    fn state_dict(&mut self) -> Option<&mut dyn noprop_nn::state::StateDict> {
        Some(&mut self.model)
    }

    fn method(&self) -> MethodName {
        match self.model.config.method {
            ContMethod::Ct => MethodName::NopropCt,
            ContMethod::Fm => MethodName::NopropFm,
        }
    }

    fn to_device(&mut self, device: &Device) -> Result<()> {
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
            self.method(),
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

    fn embedding_weight(&self) -> Option<&Tensor> {
        Some(&self.model.embedding.weight)
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

#[cfg(test)]
mod tests {
    use super::*;
    use noprop_datasets::DatasetName;

    /// Per-epoch evaluations default to at most 100 steps; the final one
    /// keeps `--steps` (1000 by default); `--eval-steps` wins.
    #[test]
    fn per_epoch_evaluations_default_to_at_most_100_steps() {
        let mut c = TrainConfig::new(MethodName::NopropCt, DatasetName::MnistTestSplit);
        let (epoch, fin) = inference(&c, ContMethod::Ct).unwrap();
        assert_eq!((epoch.steps, fin.steps), (EPOCH_EVAL_STEPS, 1000));
        c.steps = Some(20);
        let (epoch, fin) = inference(&c, ContMethod::Ct).unwrap();
        assert_eq!((epoch.steps, fin.steps), (20, 20));
        c.eval_steps = Some(500);
        let (epoch, _) = inference(&c, ContMethod::Fm).unwrap();
        assert_eq!(epoch.steps, 500);
    }
}
