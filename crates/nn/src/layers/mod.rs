//! Layers. Each caches in training-mode `forward` exactly what its
//! `backward` needs, and accumulates parameter gradients.

mod batchnorm;
mod conv;
mod dropout;
mod linear;
mod simple;
mod time_embedding;

pub use batchnorm::BatchNorm;
pub use conv::Conv2d;
pub use dropout::{mix_stream, Dropout};
pub use linear::{FrozenLinear, Linear};
pub use simple::{Flatten, MaxPool2d, ReLU, Sequential};
pub use time_embedding::SinusoidalTimeEmbedding;

/// Batch norm over `[N, C]` (statistics per feature).
pub type BatchNorm1d = BatchNorm;
/// Batch norm over `[N, C, H, W]` (statistics per channel).
pub type BatchNorm2d = BatchNorm;
