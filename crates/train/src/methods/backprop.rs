//! The back-propagation baseline (Eqs. 17–19) on the shared loop.

use std::collections::HashMap;
use std::path::Path;

use noprop_baselines::{Backprop, BackpropConfig};
use noprop_models::EmbeddingKind;
use noprop_tensor::{Device, Tensor};
use serde_json::{Map, Value};

use crate::config::TrainConfig;
use crate::error::Result;
use crate::method::{Method, Phase};
use crate::options::MethodName;

/// The T blocks chained by Eq. 18 and trained end to end.
pub struct Bp {
    /// The model.
    pub model: Backprop,
}

/// The model configuration a training run asks for.
pub fn config(c: &TrainConfig, image: (usize, usize, usize), classes: usize) -> BackpropConfig {
    let mut cfg = BackpropConfig::paper(image, classes, c.embedding, c.seed);
    cfg.steps = c.steps.unwrap_or(10);
    cfg.lr = c.lr;
    cfg.weight_decay = c.weight_decay;
    cfg
}

impl Method for Bp {
    fn state_dict(&mut self) -> Option<&mut dyn noprop_nn::state::StateDict> {
        Some(&mut self.model)
    }

    fn method(&self) -> MethodName {
        MethodName::Backprop
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

    fn embedding_weight(&self) -> Option<&Tensor> {
        Some(&self.model.embedding.weight)
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
