//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, training or evaluating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options contradict each other or name something unknown; the
    /// message says which option and why.
    #[error("invalid options: {why}")]
    Config {
        /// What is wrong, naming the option.
        why: String,
    },
    /// A value of an option is not one of the known ones.
    #[error("unknown {what} `{typed}` (expected one of: {expected}){}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownValue {
        /// Which option (`method`, `dataset`, …).
        what: &'static str,
        /// What was typed.
        typed: String,
        /// The known values.
        expected: String,
        /// The closest known value, if one is plausibly meant.
        suggestion: Option<String>,
    },
    /// A dataset could not be found, read or verified.
    #[error(transparent)]
    Data(#[from] noprop_datasets::Error),
    /// A NoProp model failed (shapes, checkpoint contents, numerics).
    #[error(transparent)]
    Model(#[from] noprop_models::Error),
    /// A baseline model failed.
    #[error(transparent)]
    Baseline(#[from] noprop_baselines::Error),
    /// A tensor operation or device failed.
    #[error(transparent)]
    Tensor(#[from] noprop_tensor::Error),
    /// A layer, optimiser or checkpoint file operation failed.
    #[error(transparent)]
    Nn(#[from] noprop_nn::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint exists but cannot be used for this run.
    #[error("{}: {why}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why it cannot be used.
        why: String,
    },
    /// The loss stopped being finite.
    #[error("{method}: non-finite training loss ({loss}) at epoch {epoch}, mini-batch {batch} (step {step}); lower --lr or check the data")]
    NonFiniteLoss {
        /// The method.
        method: String,
        /// 1-based epoch.
        epoch: usize,
        /// 1-based mini-batch within the epoch.
        batch: usize,
        /// The model's step counter.
        step: u64,
        /// The loss value.
        loss: f64,
    },
    /// A distributed run failed: a collective, a rank count the schedule
    /// cannot use, or ranks that no longer hold the same shared state.
    #[error("distributed training: {0}")]
    Distributed(String),
    /// An observer asked to stop, or reported a failure.
    #[error("{0}")]
    Observer(String),
}

impl Error {
    /// An [`Error::Config`] from anything printable.
    pub fn config(why: impl Into<String>) -> Self {
        Error::Config { why: why.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
