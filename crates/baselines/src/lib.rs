//! # noprop-baselines
//!
//! The baselines of the NoProp paper's Table 1.
//!
//! * [`Backprop`]: the T blocks of NoProp-DT chained by Eq. 18,
//!   `z_t = (1 − α_t)·z_{t−1} + α_t·û_θt(z_{t−1}, x)` with `α_t = tanh(w_t)`,
//!   and trained end to end with cross-entropy on `p̂_θout(y | z_T)` — the
//!   full forward and backward passes NoProp avoids.
//!
//! ```
//! use noprop_baselines::{Backprop, BackpropConfig};
//! use noprop_models::{ClassEmbedding, EmbeddingKind};
//! use noprop_tensor::{ops, philox::RngStream, DType};
//! let mut cfg = BackpropConfig::paper((1, 28, 28), 10, EmbeddingKind::OneHot, 0);
//! cfg.steps = 2;
//! let mut model = Backprop::new(cfg, ClassEmbedding::one_hot(10))?;
//! let x = ops::randn(&[4, 1, 28, 28], DType::F32, &mut RngStream::new(0, 0))?;
//! let loss = model.train_batch(&x, &[0, 1, 2, 3], 0)?;
//! assert!(loss > 0.0);
//! assert!((model.alpha(1) - 0.5).abs() < 1e-3); // α_t starts at 0.5, one small step away
//! # Ok::<(), noprop_baselines::Error>(())
//! ```
#![deny(missing_docs)]

mod backprop;
mod error;

pub use backprop::{Backprop, BackpropConfig};
pub use error::{Error, Result};
