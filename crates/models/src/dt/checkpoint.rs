//! NoProp-DT checkpoints: the model's named state, stated once
//! ([`StateDict`]), written and read by [`io::save_model`] / [`io::load_model`].
//!
//! Tensor names: `block{t}.…` (parameters and batch-norm statistics of block
//! `t`), `opt.block{t}.…` (its AdamW), `classifier.fc.{weight,bias}`,
//! `embed.weight` (`W_Embed`), `opt.shared.…` (the shared AdamW) and `step`.

use std::collections::HashMap;
use std::path::Path;

use noprop_nn::io::{self, FromCheckpoint, HasConfig};
use noprop_nn::state::{self, join, StateDict, StateLoader, StateVisitor};
use noprop_tensor::Tensor;

use super::{DtConfig, NoPropDt};
use crate::embedding::ClassEmbedding;
use crate::{Error, Result};

/// A checkpoint's configuration, string metadata and tensors by name.
pub type CheckpointContents = io::Checkpoint<DtConfig>;

impl StateDict for NoPropDt {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        for (i, (blk, opt)) in self.blocks.iter_mut().zip(&mut self.block_opts).enumerate() {
            let t = i + 1;
            blk.visit_state(&join(prefix, &format!("block{t}")), v)?;
            opt.visit_state(&join(prefix, &format!("opt.block{t}")), v)?;
        }
        self.classifier
            .visit_state(&join(prefix, "classifier"), v)?;
        self.embedding.visit_state(&join(prefix, "embed"), v)?;
        self.shared_opt
            .visit_state(&join(prefix, "opt.shared"), v)?;
        v.counter(&join(prefix, "step"), &mut self.step)
    }
}

/// Block `t` and its AdamW, under their checkpoint names.
struct OneBlock<'a> {
    t: usize,
    model: &'a mut NoPropDt,
}

impl StateDict for OneBlock<'_> {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        let t = self.t;
        self.model.blocks[t - 1].visit_state(&join(prefix, &format!("block{t}")), v)?;
        self.model.block_opts[t - 1].visit_state(&join(prefix, &format!("opt.block{t}")), v)
    }
}

impl HasConfig for NoPropDt {
    type Config = DtConfig;
    fn config(&self) -> &DtConfig {
        &self.config
    }
    fn method(&self) -> &str {
        "noprop-dt"
    }
}

impl FromCheckpoint for NoPropDt {
    type Error = Error;
    fn from_config(config: DtConfig, tensors: &StateLoader<'_>) -> Result<Self> {
        let embedding = ClassEmbedding::from_saved(config.embedding, tensors.get("embed.weight")?)?;
        NoPropDt::new(config, embedding)
    }
}

impl NoPropDt {
    /// Every tensor of the model and optimisers, named for a checkpoint.
    pub fn state_tensors(&mut self) -> Result<Vec<(String, Tensor)>> {
        Ok(state::state_tensors(self)?)
    }

    /// Restore from tensors written by [`NoPropDt::state_tensors`] (read from
    /// `path`, named in errors); every tensor must be used.
    pub fn load_state_tensors(
        &mut self,
        path: &Path,
        tensors: HashMap<String, Tensor>,
    ) -> Result<()> {
        let mut loader = StateLoader::new(path, &tensors);
        self.visit_state("", &mut loader)?;
        loader.finish()?;
        // Restored optimiser state arrives on the host.
        let device = self.device.clone();
        self.to_device(&device)
    }

    /// Block `t`'s parameters, batch-norm statistics and AdamW state, named
    /// as in a checkpoint (`block{t}.…`, `opt.block{t}.…`).
    pub fn block_state(&mut self, t: usize) -> Result<Vec<(String, Tensor)>> {
        self.check_block(t)?;
        Ok(state::state_tensors(&mut OneBlock { t, model: self })?)
    }

    /// Replace block `t`'s state by `tensors` (from [`NoPropDt::block_state`]
    /// of another copy of the model; `from` names their source in errors);
    /// every tensor must be used.
    pub fn load_block_state(
        &mut self,
        t: usize,
        from: &Path,
        tensors: HashMap<String, Tensor>,
    ) -> Result<()> {
        self.check_block(t)?;
        let device = self.device.clone();
        let mut loader = StateLoader::new(from, &tensors);
        OneBlock { t, model: self }.visit_state("", &mut loader)?;
        loader.finish()?;
        self.blocks[t - 1].to_device(&device)?;
        self.block_opts[t - 1].to_device(&device)?;
        Ok(())
    }

    /// Everything but the blocks — classifier, `W_Embed`, the shared AdamW
    /// and the step counter — named as in a checkpoint: the state every rank
    /// of the block-parallel schedule holds a full copy of.
    pub fn shared_state(&mut self) -> Result<Vec<(String, Tensor)>> {
        Ok(self
            .state_tensors()?
            .into_iter()
            .filter(|(n, _)| !n.starts_with("block") && !n.starts_with("opt.block"))
            .collect())
    }

    fn check_block(&self, t: usize) -> Result<()> {
        if t == 0 || t > self.blocks.len() {
            return Err(Error::Config {
                what: format!("block index {t} is outside 1..={}", self.blocks.len()),
            });
        }
        Ok(())
    }

    /// Write an atomic safetensors checkpoint with `metadata` (the config is
    /// added as `config`, the method as `method`).
    pub fn save(&mut self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        Ok(io::save_model(self, path, metadata)?)
    }

    /// Read a checkpoint's config and metadata without building a model.
    pub fn read_config(path: &Path) -> Result<CheckpointContents> {
        Ok(io::load_checkpoint(path)?)
    }

    /// Rebuild a model from a checkpoint written by [`NoPropDt::save`].
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        io::load_model(path)
    }
}
