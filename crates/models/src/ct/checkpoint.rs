//! Checkpoints: every tensor of the model and its optimiser, named, in an
//! atomic safetensors file with the configuration in the metadata.

use std::collections::HashMap;
use std::path::Path;

use noprop_nn::io;
use noprop_nn::optim::Optimizer;
use noprop_tensor::{DType, Tensor};

use super::{ContConfig, NoPropCont};
use crate::embedding::ClassEmbedding;
use crate::{Error, Result};

/// A checkpoint's configuration, string metadata and tensors by name.
pub type ContCheckpoint = io::Checkpoint<ContConfig>;
impl NoPropCont {
    /// Every tensor of the model and optimiser, named for a checkpoint.
    pub fn state_tensors(&mut self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = noprop_nn::prefixed("net", self.net.params())
            .into_iter()
            .map(|p| (p.name, p.value.clone()))
            .collect();
        out.extend(
            self.classifier
                .params()
                .into_iter()
                .map(|p| (p.name, p.value.clone())),
        );
        out.push(("embed.weight".into(), self.embedding.weight.clone()));
        if let Some(s) = self.schedule.as_mut() {
            out.push(("schedule.params".into(), s.param_and_grad().0.clone()));
        }
        out.extend(
            self.opt
                .state()
                .into_iter()
                .map(|(n, v)| (format!("opt.{n}"), v)),
        );
        out.push(("step".into(), Tensor::scalar(self.step as f64, DType::F64)));
        out
    }

    /// Restore from tensors written by [`NoPropCont::state_tensors`].
    pub fn load_state_tensors(
        &mut self,
        path: &Path,
        tensors: HashMap<String, Tensor>,
    ) -> Result<()> {
        let missing = |k: &str| Error::Checkpoint {
            path: path.to_path_buf(),
            what: format!("missing tensor `{k}`"),
        };
        let take =
            |k: &str, dst: &mut Tensor| -> Result<()> { Ok(io::restore(path, &tensors, k, dst)?) };
        for p in noprop_nn::prefixed("net", self.net.params()) {
            take(&p.name, p.value)?;
        }
        for p in self.classifier.params() {
            take(&p.name, p.value)?;
        }
        take("embed.weight", &mut self.embedding.weight)?;
        if let Some(s) = self.schedule.as_mut() {
            take("schedule.params", s.param_and_grad().0)?;
            let v = s.params();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    what: "non-finite schedule parameters".into(),
                });
            }
        }
        self.opt.load_state(
            tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("opt.").map(|n| (n.to_string(), v.clone())))
                .collect(),
        )?;
        self.step = tensors.get("step").ok_or_else(|| missing("step"))?.item()? as u64;
        Ok(())
    }

    /// Write an atomic safetensors checkpoint with `metadata` (the config is
    /// added as `config`, the method as `method`).
    pub fn save(&mut self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        let tensors = self.state_tensors();
        let method = self.config.method.name();
        Ok(io::save_checkpoint(
            path,
            &tensors,
            &self.config,
            method,
            metadata,
        )?)
    }

    /// Read a checkpoint's config and metadata without building a model.
    pub fn read_config(path: &Path) -> Result<ContCheckpoint> {
        Ok(io::load_checkpoint(path)?)
    }

    /// Rebuild a model from a checkpoint written by [`NoPropCont::save`].
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        let (cfg, meta, tensors) = Self::read_config(path)?;
        let emb = tensors
            .get("embed.weight")
            .ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                what: "missing tensor `embed.weight`".into(),
            })?;
        let embedding = ClassEmbedding::from_saved(cfg.embedding, emb)?;
        let mut model = NoPropCont::new(cfg, embedding)?;
        model.load_state_tensors(path, tensors)?;
        Ok((model, meta))
    }
}
