//! NoProp-DT (Eq. 8) on the shared loop: `--order batch` (one pass per
//! epoch) or `--order paper` (Algorithm 1: T passes, one per block).

use std::collections::HashMap;
use std::path::Path;

use noprop_models::{DtConfig, EmbeddingKind, NoPropDt, Order};
use noprop_tensor::{Device, Tensor};
use serde_json::{Map, Value};

use crate::config::TrainConfig;
use crate::error::Result;
use crate::method::{Method, Phase};
use crate::options::MethodName;

/// NoProp-DT and its inference options.
pub struct Dt {
    /// The model.
    pub model: NoPropDt,
    /// Fresh noise at every inference step (Eq. 3).
    pub noise: bool,
}

/// The model configuration a training run asks for.
pub fn config(c: &TrainConfig, image: (usize, usize, usize), classes: usize) -> DtConfig {
    let mut cfg = DtConfig::paper(image, classes, c.embedding, c.seed);
    cfg.steps = c.steps.unwrap_or(10);
    cfg.eta = c.eta.unwrap_or(0.1);
    cfg.lr = c.lr;
    cfg.weight_decay = c.weight_decay;
    cfg.concurrent_blocks = !c.sequential_blocks;
    cfg.order = c.order.unwrap_or_default().into();
    cfg.classifier = c
        .classifier
        .unwrap_or_default()
        .kind(c.sigma.unwrap_or(1.0));
    cfg.embed_grad = c.embed_grad.unwrap_or_default().into();
    cfg
}

impl Method for Dt {
    fn state_dict(&mut self) -> Option<&mut dyn noprop_nn::state::StateDict> {
        Some(&mut self.model)
    }

    fn steps_on_caller_thread(&mut self) {
        self.model.set_steps_on_caller_thread(true);
    }

    fn method(&self) -> MethodName {
        MethodName::NopropDt
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

    fn passes(&self) -> Option<usize> {
        (self.model.config.order == Order::Paper).then_some(self.model.config.steps)
    }

    fn train_batch(
        &mut self,
        x: &Tensor,
        y: &[usize],
        epoch: usize,
        pass: usize,
    ) -> Result<(f64, usize)> {
        Ok(match self.model.config.order {
            Order::Batch => {
                let losses = self.model.train_batch(x, y, epoch)?;
                (losses.iter().map(|l| l.total()).sum(), losses.len())
            }
            Order::Paper => {
                let l = self.model.train_block(pass, x, y, epoch)?;
                self.model.step += 1;
                (l.total(), 1)
            }
        })
    }

    fn predict(&mut self, x: &Tensor, key: u64, _phase: Phase) -> Result<Vec<usize>> {
        Ok(self.model.predict(x, self.noise, key)?)
    }

    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        Ok(self.model.save(path, meta)?)
    }

    fn describe(&mut self) -> String {
        let c = &self.model.config;
        let (steps, embedding, order) = (c.steps, c.embedding, c.order);
        format!(
            "noprop-dt: T = {}, {} params per block, embedding {}, order {:?}",
            steps,
            self.model.params_per_block(),
            embedding,
            order
        )
    }

    fn embedding_weight(&self) -> Option<&Tensor> {
        Some(&self.model.embedding.weight)
    }

    fn result_fields(&self) -> Map<String, Value> {
        let order = match self.model.config.order {
            Order::Batch => "batch",
            Order::Paper => "paper",
        };
        let mut m = Map::new();
        m.insert("config".into(), serde_json::json!(self.model.config));
        m.insert("order".into(), order.into());
        m.insert("inference_noise".into(), self.noise.into());
        m
    }
}
