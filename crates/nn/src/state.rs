//! Named model state, stated once and walked by both saving and loading.
//!
//! A model implements [`StateDict`] by visiting its parts in order —
//! layers, blocks, optimiser state, embeddings, counters — each under a
//! dotted prefix. The same walk serves both directions:
//!
//! * [`StateSaver`] records every tensor under its full name (a checkpoint's
//!   contents, [`state_tensors`]);
//! * [`StateLoader`] looks each name up in a checkpoint, checks its shape,
//!   assigns it, and afterwards reports the checkpoint's tensors nothing
//!   claimed ([`StateLoader::finish`]). Every failure is a typed error naming
//!   the checkpoint file and the tensor.
//!
//! Every [`Module`] is a [`StateDict`] (its parameters, then its buffers);
//! [`Adam`](crate::optim::Adam) and [`Sgd`](crate::optim::Sgd) store their
//! moments under the names of the parameters they update.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use noprop_tensor::{DType, Tensor};

use crate::io::NamedTensors;
use crate::{Error, Module, Result};

/// What a [`StateDict`] walk does with each piece of state it visits.
pub trait StateVisitor {
    /// A tensor the model owns. Saving records a copy under `name`; loading
    /// replaces `value` with the checkpoint's tensor `name`, which must have
    /// `value`'s shape (it is converted to `value`'s dtype and device).
    fn tensor(&mut self, name: &str, value: &mut Tensor) -> Result<()>;

    /// A step counter, stored as a rank-0 `F64` tensor (exact up to 2⁵³).
    fn counter(&mut self, name: &str, value: &mut u64) -> Result<()>;

    /// Tensors whose keys are only known at run time (optimiser moments,
    /// created on the first step): entry `k` is stored as `{prefix}.{k}{suffix}`
    /// (`{k}{suffix}` under an empty prefix). Loading replaces `map` with every
    /// not yet claimed checkpoint tensor of that form.
    fn tensor_map(
        &mut self,
        prefix: &str,
        suffix: &str,
        map: &mut BTreeMap<String, Tensor>,
    ) -> Result<()>;
}

/// State that can be saved to and loaded from named tensors.
pub trait StateDict {
    /// Visit every piece of state under `prefix` (`""` at the root), in a
    /// fixed order. Implementations compose: a model visits its parts with
    /// [`join`]ed prefixes.
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> Result<()>;
}

/// `prefix.name`, or `name` when `prefix` is empty.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A module's parameters (in [`Module::params`] order), then its buffers.
impl<M: Module + ?Sized> StateDict for M {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> Result<()> {
        for p in self.params() {
            v.tensor(&join(prefix, &p.name), p.value)?;
        }
        for (name, b) in self.buffers() {
            v.tensor(&join(prefix, &name), b)?;
        }
        Ok(())
    }
}

/// Every tensor of `state`, named, in visit order.
pub fn state_tensors<S: StateDict + ?Sized>(state: &mut S) -> Result<NamedTensors> {
    let mut saver = StateSaver::default();
    state.visit_state("", &mut saver)?;
    Ok(saver.into_tensors())
}

/// The saving visitor: collects copies of the visited tensors.
#[derive(Debug, Default)]
pub struct StateSaver {
    tensors: NamedTensors,
    names: HashSet<String>,
}

impl StateSaver {
    /// The tensors collected so far, in visit order.
    pub fn into_tensors(self) -> NamedTensors {
        self.tensors
    }

    fn push(&mut self, name: String, t: Tensor) -> Result<()> {
        if !self.names.insert(name.clone()) {
            return Err(Error::DuplicateTensor { name });
        }
        self.tensors.push((name, t));
        Ok(())
    }
}

impl StateVisitor for StateSaver {
    fn tensor(&mut self, name: &str, value: &mut Tensor) -> Result<()> {
        self.push(name.to_string(), value.clone())
    }

    fn counter(&mut self, name: &str, value: &mut u64) -> Result<()> {
        self.push(name.to_string(), Tensor::scalar(*value as f64, DType::F64))
    }

    fn tensor_map(
        &mut self,
        prefix: &str,
        suffix: &str,
        map: &mut BTreeMap<String, Tensor>,
    ) -> Result<()> {
        for (k, t) in map.iter() {
            self.push(format!("{}{suffix}", join(prefix, k)), t.clone())?;
        }
        Ok(())
    }
}

/// The loading visitor over a checkpoint's tensors by name (read from `path`).
#[derive(Debug)]
pub struct StateLoader<'a> {
    path: PathBuf,
    tensors: &'a HashMap<String, Tensor>,
    claimed: HashSet<String>,
}

impl<'a> StateLoader<'a> {
    /// A loader over `tensors`, read from `path` (named in every error).
    pub fn new(path: &Path, tensors: &'a HashMap<String, Tensor>) -> Self {
        StateLoader {
            path: path.to_path_buf(),
            tensors,
            claimed: HashSet::new(),
        }
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint's tensor `name` without claiming it (e.g. what a model
    /// needs before it can be built); missing is [`Error::MissingTensor`].
    pub fn get(&self, name: &str) -> Result<&'a Tensor> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    /// Succeeds when every checkpoint tensor was claimed by the walk;
    /// otherwise [`Error::UnexpectedTensors`] lists the others, sorted.
    pub fn finish(self) -> Result<()> {
        let mut names: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !self.claimed.contains(*k))
            .cloned()
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        names.sort();
        Err(Error::UnexpectedTensors {
            path: self.path,
            names,
        })
    }

    fn claim(&mut self, name: &str) -> Result<&'a Tensor> {
        let t = self.get(name)?;
        self.claimed.insert(name.to_string());
        Ok(t)
    }
}

impl StateVisitor for StateLoader<'_> {
    fn tensor(&mut self, name: &str, value: &mut Tensor) -> Result<()> {
        let src = self.claim(name)?;
        if src.shape() != value.shape() {
            return Err(Error::TensorShape {
                path: self.path.clone(),
                name: name.to_string(),
                stored: src.shape().to_vec(),
                expected: value.shape().to_vec(),
            });
        }
        *value = src.to_dtype(value.dtype()).to_device(&value.device())?;
        Ok(())
    }

    fn counter(&mut self, name: &str, value: &mut u64) -> Result<()> {
        let src = self.claim(name)?;
        let bad = |what: String| Error::InvalidTensor {
            path: self.path.clone(),
            name: name.to_string(),
            what,
        };
        let v = src.item().map_err(|e| bad(e.to_string()))?;
        if !(v >= 0.0 && v.fract() == 0.0 && v <= (1u64 << 53) as f64) {
            return Err(bad(format!("{v} is not a step count")));
        }
        *value = v as u64;
        Ok(())
    }

    fn tensor_map(
        &mut self,
        prefix: &str,
        suffix: &str,
        map: &mut BTreeMap<String, Tensor>,
    ) -> Result<()> {
        let head = join(prefix, "");
        let tensors = self.tensors;
        map.clear();
        for (name, t) in tensors {
            if self.claimed.contains(name) {
                continue;
            }
            let key = name
                .strip_prefix(head.as_str())
                .and_then(|rest| rest.strip_suffix(suffix))
                .filter(|k| !k.is_empty());
            if let Some(k) = key {
                map.insert(k.to_string(), t.clone());
                self.claimed.insert(name.clone());
            }
        }
        Ok(())
    }
}
