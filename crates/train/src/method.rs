//! The one abstraction every algorithm implements for the shared loop.

use std::collections::HashMap;
use std::path::Path;

use noprop_models::EmbeddingKind;
use noprop_nn::state::StateDict;
use noprop_tensor::{Device, Tensor};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::options::MethodName;

/// Which evaluation a prediction is for (CT/FM and the adjoint may use fewer
/// inference steps for the per-epoch evaluations than for the final one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The per-epoch test/train accuracies.
    Epoch,
    /// The final test accuracy (and `noprop eval`).
    Final,
}

/// What the shared loop ([`crate::Trainer`]) needs from an algorithm.
///
/// One implementation per algorithm lives in [`crate::methods`]. A method
/// owns its model and optimisers and does everything inside one mini-batch
/// step (forward, local losses, gradients, optimiser updates); the trainer
/// owns everything around it (data order, checkpoint cadence, resume,
/// evaluation, results). A new algorithm — a back-propagation-free relative,
/// or a distributed schedule of an existing one — plugs in here: exchanging
/// gradients between processes belongs inside [`Method::train_batch`],
/// between computing the gradients and applying them.
pub trait Method {
    /// The algorithm.
    fn method(&self) -> MethodName;
    /// The class embedding.
    fn embedding(&self) -> EmbeddingKind;
    /// The master seed.
    fn seed(&self) -> u64;
    /// Mini-batches trained so far (checkpoints fall on multiples of the cadence).
    fn step(&self) -> u64;
    /// `Some(P)`: every epoch makes `P` passes over the training set, each
    /// with its own shuffle, and the pass in progress is recorded (1-based) in
    /// the checkpoint (NoProp-DT's `--order paper`); `None`: one pass.
    fn passes(&self) -> Option<usize> {
        None
    }
    /// Train on one mini-batch during pass `pass` (1-based, see
    /// [`Method::passes`]); returns the sum of the loss values it produced
    /// and how many there were (the epoch's `train_loss` is their mean).
    fn train_batch(
        &mut self,
        x: &Tensor,
        y: &[usize],
        epoch: usize,
        pass: usize,
    ) -> Result<(f64, usize)>;
    /// Predicted classes for `x`; `key` seeds the inference noise.
    fn predict(&mut self, x: &Tensor, key: u64, phase: Phase) -> Result<Vec<usize>>;
    /// Write a checkpoint whose metadata also holds `meta`.
    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()>;
    /// One line describing the model for the start of training.
    fn describe(&mut self) -> String;
    /// Extra text for the per-epoch log line.
    fn epoch_note(&self) -> String {
        String::new()
    }
    /// Method-specific fields of the training result (at least `config`).
    fn result_fields(&self) -> Map<String, Value>;
    /// `W_Embed` (`[m, d]`), for the methods that have a class embedding.
    fn embedding_weight(&self) -> Option<&Tensor> {
        None
    }
    /// Method-specific fields of an evaluation result.
    fn eval_fields(&self) -> Map<String, Value> {
        Map::new()
    }
    /// Bring this rank's copy of the whole model up to date before an
    /// evaluation or a checkpoint (the block-parallel schedule gathers the
    /// blocks other ranks trained). Every rank calls it at the same points;
    /// the default, for single-process methods, does nothing.
    fn synchronize(&mut self) -> Result<()> {
        Ok(())
    }
    /// A digest of the state every rank of a distributed run must hold
    /// identically; the trainer compares it across the ranks after every
    /// epoch. `None`: nothing to check (the default).
    fn shared_digest(&mut self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// The model's named state (parameters, buffers, optimiser moments,
    /// counters: a checkpoint's tensors), for distributed schedules that
    /// compare or combine it across ranks. `None`: not available.
    fn state_dict(&mut self) -> Option<&mut dyn StateDict> {
        None
    }
    /// Data-parallel training is about to start: take every optimiser step
    /// on the calling thread (see `noprop_nn::optim::with_grad_hook`).
    fn steps_on_caller_thread(&mut self) {}
    /// Move the model (parameters, buffers, optimiser state) to `device`;
    /// every later draw and per-sample tensor of the method is made there.
    /// Every built-in method implements it; the default, for a method
    /// without a device path, accepts the CPU only (and `--device auto` on a
    /// GPU then fails rather than falling back for that method alone).
    fn to_device(&mut self, device: &Device) -> Result<()> {
        if device.is_cpu() {
            Ok(())
        } else {
            Err(Error::config(format!(
                "{} does not run on {device}; use --device cpu",
                self.method()
            )))
        }
    }
}
