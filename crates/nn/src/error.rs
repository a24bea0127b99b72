//! The error type of `noprop-nn`.

use std::path::PathBuf;

/// Everything that can go wrong in a layer, optimiser or checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] noprop_tensor::Error),
    /// `backward` was called without a matching training-mode `forward`.
    #[error("{layer}: backward called without a cached forward pass")]
    NoForwardCache {
        /// The layer.
        layer: &'static str,
    },
    /// An input had the wrong shape for a layer.
    #[error("{layer}: expected input {expected}, got shape {got:?}")]
    BadInput {
        /// The layer.
        layer: &'static str,
        /// What it expected, in words.
        expected: String,
        /// The shape it got.
        got: Vec<usize>,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file could not be parsed or does not fit the model.
    #[error("{path}: {what}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A checkpoint lacks a tensor the model needs.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's full name.
        name: String,
    },
    /// A checkpoint holds tensors the model does not have.
    #[error("{path}: unexpected tensors (not part of this model): {}", names.join(", "))]
    UnexpectedTensors {
        /// The checkpoint file.
        path: PathBuf,
        /// Their full names, sorted.
        names: Vec<String>,
    },
    /// A checkpoint tensor's shape differs from the model's.
    #[error("{path}: tensor `{name}` has shape {stored:?}, the model needs {expected:?}")]
    TensorShape {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's full name.
        name: String,
        /// The shape in the checkpoint.
        stored: Vec<usize>,
        /// The shape the model needs.
        expected: Vec<usize>,
    },
    /// A checkpoint tensor holds a value the model cannot take (e.g. a step
    /// count that is not a non-negative integer).
    #[error("{path}: tensor `{name}`: {what}")]
    InvalidTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's full name.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// Two pieces of state were given the same name while saving (a bug in a
    /// [`StateDict`](crate::state::StateDict) implementation).
    #[error("two tensors are named `{name}` in one checkpoint")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// The gradient hook of [`crate::optim::with_grad_hook`] failed (for
    /// example a data-parallel all-reduce).
    #[error("gradient exchange failed: {what}")]
    GradHook {
        /// What went wrong.
        what: String,
    },
    /// Optimiser state does not match the parameters it is applied to.
    #[error("optimizer state mismatch: {what}")]
    OptimizerState {
        /// What is wrong.
        what: String,
    },
    /// [`crate::optim::clip_grad_norm`] was given a max norm that is not
    /// positive and finite.
    #[error("gradient clipping needs a positive finite max norm, got {max_norm}")]
    ClipNorm {
        /// The max norm given.
        max_norm: f64,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
