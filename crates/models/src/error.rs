//! The error type of `noprop-models`.

use std::path::PathBuf;

/// Everything that can go wrong building, training or restoring a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] noprop_tensor::Error),
    /// A layer, optimiser or checkpoint I/O failed.
    #[error(transparent)]
    Nn(#[from] noprop_nn::Error),
    /// The schedule rejected its parameters.
    #[error(transparent)]
    Schedule(#[from] noprop_schedules::Error),
    /// A configuration value is invalid.
    #[error("invalid configuration: {what}")]
    Config {
        /// What is wrong.
        what: String,
    },
    /// The loss became NaN or infinite; training stopped (the last checkpoint is intact).
    #[error("non-finite loss {value} in block {block} at epoch {epoch}, step {step} ({term})")]
    NonFiniteLoss {
        /// The block (1-based `t`), or 0 for the shared classifier.
        block: usize,
        /// The epoch (0-based).
        epoch: usize,
        /// The global step (mini-batches done before this one).
        step: u64,
        /// Which loss term.
        term: &'static str,
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
