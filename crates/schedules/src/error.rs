//! The error type of `noprop-schedules`.

/// Everything that can go wrong building or using a schedule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A schedule parameter is out of range.
    #[error("invalid schedule: {what}")]
    Invalid {
        /// What is wrong.
        what: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] noprop_tensor::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
