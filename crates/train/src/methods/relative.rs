//! The back-propagation-free relatives and their matched back-prop MLP
//! (`noprop_baselines::relatives`) on the shared loop.

use std::collections::HashMap;
use std::path::Path;

use noprop_baselines::{Relative, RelativeConfig, RelativeMethod};
use noprop_models::EmbeddingKind;
use noprop_tensor::Tensor;
use serde_json::{Map, Value};

use crate::config::TrainConfig;
use crate::error::Result;
use crate::method::{Method, Phase};
use crate::options::MethodName;

/// One relative.
pub struct Rel {
    /// The model.
    pub model: Relative,
}

/// The model configuration a training run asks for: the method's defaults
/// (`RelativeConfig::defaults`) with the options given.
pub fn config(
    c: &TrainConfig,
    method: RelativeMethod,
    image: (usize, usize, usize),
    classes: usize,
) -> RelativeConfig {
    let mut cfg = RelativeConfig::defaults(method, image, classes, c.seed);
    if let Some(h) = &c.hidden {
        cfg.hidden = h.clone();
    }
    if let Some(a) = c.activation {
        cfg.activation = a.into();
    }
    if let Some(t) = c.ff_threshold {
        cfg.ff_threshold = t;
    }
    if let Some(l) = c.ccl_loss {
        cfg.ccl_loss = l.into();
    }
    if let Some(s) = c.boost_stages {
        cfg.stages = s;
    }
    if let Some(e) = c.epochs_per_stage {
        cfg.epochs_per_stage = e;
    }
    if let Some(n) = c.clip_grad_norm {
        cfg.clip_grad_norm = (n > 0.0).then_some(n);
    }
    cfg.lr = c.lr;
    cfg.weight_decay = c.weight_decay;
    cfg
}

/// The CLI name of a relative.
pub fn method_name(m: RelativeMethod) -> MethodName {
    MethodName::RELATIVES
        .into_iter()
        .find(|n| n.relative() == Some(m))
        .unwrap_or(MethodName::BackpropMlp)
}

impl Method for Rel {
    fn method(&self) -> MethodName {
        method_name(self.model.config.method)
    }

    fn embedding(&self) -> EmbeddingKind {
        EmbeddingKind::OneHot
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
        Ok(self.model.train_batch(x, y, epoch)?)
    }

    fn predict(&mut self, x: &Tensor, _key: u64, _phase: Phase) -> Result<Vec<usize>> {
        Ok(self.model.predict(x)?)
    }

    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        Ok(self.model.save(path, meta)?)
    }

    fn describe(&mut self) -> String {
        let params = self.model.num_params();
        let c = &self.model.config;
        let shape = match c.method {
            RelativeMethod::GradBoost => format!(
                "{} stages of {} {} units ({} epoch(s) each)",
                c.stages, c.hidden[0], c.activation, c.epochs_per_stage
            ),
            _ => format!("hidden {:?} {}", c.hidden, c.activation),
        };
        let shape = match c.clip_grad_norm {
            Some(n) => format!("{shape}, gradient norm clipped at {n} per network"),
            None => shape,
        };
        format!("{}: MLP {shape}, {params} parameters", c.method.as_str())
    }

    fn epoch_note(&self) -> String {
        match self.model.config.method {
            RelativeMethod::GradBoost => format!(", stages trained {}", self.model.stages_trained),
            _ => String::new(),
        }
    }

    fn result_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("config".into(), serde_json::json!(self.model.config));
        if self.model.config.method == RelativeMethod::GradBoost {
            m.insert(
                "stages_trained".into(),
                serde_json::json!(self.model.stages_trained),
            );
        }
        m
    }
}
