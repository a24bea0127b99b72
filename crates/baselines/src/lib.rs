//! # noprop-baselines
//!
//! The baselines of the NoProp paper's Table 1.
//!
//! * [`Backprop`]: the T blocks of NoProp-DT chained by Eq. 18,
//!   `z_t = (1 − α_t)·z_{t−1} + α_t·û_θt(z_{t−1}, x)` with `α_t = tanh(w_t)`,
//!   and trained end to end with cross-entropy on `p̂_θout(y | z_T)` — the
//!   full forward and backward passes NoProp avoids.
//! * [`Adjoint`]: a neural ODE `dz/dt = g_θ(z, x, t)` on the CT network,
//!   Euler steps, a linear classifier on `z_1`, and gradients from the exact
//!   discrete adjoint integrated backward with the states recovered by
//!   inverting each Euler step (memory constant in the number of steps; see
//!   [`adjoint`]).
//! * [`Relative`]: the back-propagation-free relatives of NoProp —
//!   Forward-Forward, Counter-Current Learning, DFA, DRTP and
//!   gradient-boosted sequential training — and their matched back-prop
//!   MLP, on one fully connected network ([`relatives`]).
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
//!
//! ```
//! use noprop_baselines::{Adjoint, AdjointConfig};
//! use noprop_tensor::{ops, philox::RngStream, DType};
//! let mut cfg = AdjointConfig::paper((1, 28, 28), 10, 0);
//! cfg.steps = 5;
//! let mut model = Adjoint::new(cfg)?;
//! let x = ops::randn(&[4, 1, 28, 28], DType::F32, &mut RngStream::new(0, 0))?;
//! let loss = model.train_batch(&x, &[0, 1, 2, 3], 0)?;
//! assert!(loss > 0.0);
//! assert!(model.last_stats.z0_drift < 1e-4); // the states were recovered, not stored
//! assert_eq!(model.predict(&x, 5, 0)?.len(), 4);
//! # Ok::<(), noprop_baselines::Error>(())
//! ```
#![deny(missing_docs)]

pub mod adjoint;
mod backprop;
mod error;
pub mod relatives;

pub use adjoint::{Adjoint, AdjointConfig, AdjointStats};
pub use backprop::{Backprop, BackpropConfig};
pub use error::{Error, Result};
pub use relatives::{Activation, CclLoss, Relative, RelativeConfig, RelativeMethod};
