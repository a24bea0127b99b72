//! The error type of `noprop-baselines`.

use std::path::PathBuf;

/// Everything that can go wrong building, training or restoring a baseline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] noprop_tensor::Error),
    /// A layer, optimiser or checkpoint I/O failed.
    #[error(transparent)]
    Nn(#[from] noprop_nn::Error),
    /// A model component failed.
    #[error(transparent)]
    Models(#[from] noprop_models::Error),
    /// A configuration value is invalid.
    #[error("invalid configuration: {what}")]
    Config {
        /// What is wrong.
        what: String,
    },
    /// The loss became NaN or infinite; training stopped (the last checkpoint is intact).
    #[error("non-finite loss {value} at epoch {epoch}, step {step}")]
    NonFiniteLoss {
        /// The epoch (0-based).
        epoch: usize,
        /// The global step.
        step: u64,
        /// The value.
        value: f64,
    },
    /// A checkpoint does not match the model being restored.
    #[error("{path}: {what}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
