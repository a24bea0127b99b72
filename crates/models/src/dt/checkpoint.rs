//! Checkpoints: every tensor of the model and its optimisers, named, in an
//! atomic safetensors file with the configuration in the metadata.

use std::collections::HashMap;
use std::path::Path;

use noprop_nn::io;
use noprop_nn::optim::Optimizer;
use noprop_tensor::{DType, Tensor};

use super::{DtConfig, NoPropDt};
use crate::embedding::ClassEmbedding;
use crate::{Error, Result};

/// A checkpoint's configuration, string metadata and tensors by name.
pub type CheckpointContents = io::Checkpoint<DtConfig>;

impl NoPropDt {
    /// Every tensor of the model and optimisers, named for a checkpoint.
    pub fn state_tensors(&mut self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            let t = i + 1;
            out.extend(
                blk.params()
                    .into_iter()
                    .map(|p| (format!("block{t}.{}", p.name), p.value.clone())),
            );
            out.extend(
                blk.buffers()
                    .into_iter()
                    .map(|(n, v)| (format!("block{t}.{n}"), v.clone())),
            );
            out.extend(
                self.block_opts[i]
                    .state()
                    .into_iter()
                    .map(|(n, v)| (format!("opt.block{t}.{n}"), v)),
            );
        }
        out.extend(
            self.classifier
                .params()
                .into_iter()
                .map(|p| (p.name, p.value.clone())),
        );
        out.push(("embed.weight".into(), self.embedding.weight.clone()));
        out.extend(
            self.shared_opt
                .state()
                .into_iter()
                .map(|(n, v)| (format!("opt.shared.{n}"), v)),
        );
        out.push(("step".into(), Tensor::scalar(self.step as f64, DType::F64)));
        out
    }

    /// Restore from tensors written by [`NoPropDt::state_tensors`].
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
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            let t = i + 1;
            for p in blk.params() {
                take(&format!("block{t}.{}", p.name), p.value)?;
            }
            for (n, v) in blk.buffers() {
                take(&format!("block{t}.{n}"), v)?;
            }
            let prefix = format!("opt.block{t}.");
            self.block_opts[i].load_state(
                tensors
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix(&prefix).map(|n| (n.to_string(), v.clone()))
                    })
                    .collect(),
            )?;
        }
        for p in self.classifier.params() {
            take(&p.name, p.value)?;
        }
        take("embed.weight", &mut self.embedding.weight)?;
        self.shared_opt.load_state(
            tensors
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("opt.shared.")
                        .map(|n| (n.to_string(), v.clone()))
                })
                .collect(),
        )?;
        self.step = tensors.get("step").ok_or_else(|| missing("step"))?.item()? as u64;
        // Restored optimiser state arrives on the host.
        let device = self.device.clone();
        self.to_device(&device)
    }

    /// Write an atomic safetensors checkpoint with `metadata` (the config is added as `config`).
    pub fn save(&mut self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        let tensors = self.state_tensors();
        Ok(io::save_checkpoint(
            path,
            &tensors,
            &self.config,
            "noprop-dt",
            metadata,
        )?)
    }

    /// Read a checkpoint's config and metadata without building a model.
    pub fn read_config(path: &Path) -> Result<CheckpointContents> {
        Ok(io::load_checkpoint(path)?)
    }

    /// Rebuild a model from a checkpoint written by [`NoPropDt::save`].
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        let (cfg, meta, tensors) = Self::read_config(path)?;
        let emb = tensors
            .get("embed.weight")
            .ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                what: "missing tensor `embed.weight`".into(),
            })?;
        let embedding = ClassEmbedding::from_saved(cfg.embedding, emb)?;
        let mut model = NoPropDt::new(cfg, embedding)?;
        model.load_state_tensors(path, tensors)?;
        Ok((model, meta))
    }
}
