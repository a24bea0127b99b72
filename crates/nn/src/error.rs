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
    /// Optimiser state does not match the parameters it is applied to.
    #[error("optimizer state mismatch: {what}")]
    OptimizerState {
        /// What is wrong.
        what: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
