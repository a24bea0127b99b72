//! NoProp-CT/FM checkpoints: the model's named state, stated once
//! ([`StateDict`]), written and read by [`io::save_model`] / [`io::load_model`].
//!
//! Tensor names: `net.…` (the shared network), `classifier.fc.{weight,bias}`,
//! `embed.weight` (`W_Embed`), `schedule.params` (CT only), `opt.…` (the
//! Adam over all of them) and `step`.

use std::collections::HashMap;
use std::path::Path;

use noprop_nn::io::{self, FromCheckpoint, HasConfig};
use noprop_nn::state::{self, join, StateDict, StateLoader, StateVisitor};
use noprop_tensor::Tensor;

use super::{ContConfig, NoPropCont};
use crate::embedding::ClassEmbedding;
use crate::{Error, Result};

/// A checkpoint's configuration, string metadata and tensors by name.
pub type ContCheckpoint = io::Checkpoint<ContConfig>;

impl StateDict for NoPropCont {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        self.net.visit_state(&join(prefix, "net"), v)?;
        self.classifier
            .visit_state(&join(prefix, "classifier"), v)?;
        self.embedding.visit_state(&join(prefix, "embed"), v)?;
        if let Some(s) = self.schedule.as_mut() {
            v.tensor(&join(prefix, "schedule.params"), s.param_and_grad().0)?;
        }
        self.opt.visit_state(&join(prefix, "opt"), v)?;
        v.counter(&join(prefix, "step"), &mut self.step)
    }
}

impl HasConfig for NoPropCont {
    type Config = ContConfig;
    fn config(&self) -> &ContConfig {
        &self.config
    }
    fn method(&self) -> &str {
        self.config.method.name()
    }
}

impl FromCheckpoint for NoPropCont {
    type Error = Error;
    fn from_config(config: ContConfig, tensors: &StateLoader<'_>) -> Result<Self> {
        let embedding = ClassEmbedding::from_saved(config.embedding, tensors.get("embed.weight")?)?;
        NoPropCont::new(config, embedding)
    }

    /// The learnable schedule's parameters must be finite.
    fn check_loaded(&mut self, path: &Path) -> Result<()> {
        match &self.schedule {
            Some(s) if s.params().iter().any(|x| !x.is_finite()) => Err(Error::Checkpoint {
                path: path.to_path_buf(),
                what: "non-finite schedule parameters".into(),
            }),
            _ => Ok(()),
        }
    }
}

impl NoPropCont {
    /// Every tensor of the model and optimiser, named for a checkpoint.
    pub fn state_tensors(&mut self) -> Result<Vec<(String, Tensor)>> {
        Ok(state::state_tensors(self)?)
    }

    /// Restore from tensors written by [`NoPropCont::state_tensors`] (read
    /// from `path`, named in errors); every tensor must be used.
    pub fn load_state_tensors(
        &mut self,
        path: &Path,
        tensors: HashMap<String, Tensor>,
    ) -> Result<()> {
        let mut loader = StateLoader::new(path, &tensors);
        self.visit_state("", &mut loader)?;
        loader.finish()?;
        self.check_loaded(path)
    }

    /// Write an atomic safetensors checkpoint with `metadata` (the config is
    /// added as `config`, the method as `method`).
    pub fn save(&mut self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        Ok(io::save_model(self, path, metadata)?)
    }

    /// Read a checkpoint's config and metadata without building a model.
    pub fn read_config(path: &Path) -> Result<ContCheckpoint> {
        Ok(io::load_checkpoint(path)?)
    }

    /// Rebuild a model from a checkpoint written by [`NoPropCont::save`].
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        io::load_model(path)
    }
}
