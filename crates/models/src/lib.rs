//! # noprop-models
//!
//! NoProp (Li, Teh, Pascanu, arXiv 2503.24322): networks whose blocks each
//! learn, on their own, to denoise a noisy label embedding.
//!
//! * [`ClassEmbedding`]: one-hot, learned (`dim=20`) or prototype `W_Embed`.
//! * [`DenoiseBlock`]: the DT block of the paper's Figure 6.
//! * [`NoPropDt`]: T blocks, the Eq. 8 loss, training (block-local
//!   back-propagation only), stochastic inference (Eq. 3) and checkpoints.
//! * [`NoPropCont`]: NoProp-CT (Eq. 9, learnable schedule) and NoProp-FM
//!   (Eqs. 11–13) on one shared [`CtNet`], with ancestral, Euler or Heun
//!   inference and the image path cached across steps (docs/DECISIONS.md § 17).
//!
//! ```
//! use noprop_models::{ClassEmbedding, DtConfig, EmbeddingKind, NoPropDt};
//! use noprop_tensor::{ops, philox::RngStream, DType};
//! let mut cfg = DtConfig::paper((1, 28, 28), 10, EmbeddingKind::OneHot, 0);
//! cfg.steps = 2;
//! let mut model = NoPropDt::new(cfg, ClassEmbedding::one_hot(10))?;
//! let x = ops::randn(&[4, 1, 28, 28], DType::F32, &mut RngStream::new(0, 0))?;
//! let losses = model.train_batch(&x, &[0, 1, 2, 3], 0)?;
//! assert_eq!(losses.len(), 2);
//! assert_eq!(model.predict(&x, true, 0)?.len(), 4);
//! assert_eq!(model.params_per_block(), 919_946); // Table 5, MNIST one-hot
//! # Ok::<(), noprop_models::Error>(())
//! ```
//!
//! NoProp-FM (and NoProp-CT with [`ContMethod::Ct`]) on one shared network:
//!
//! ```
//! use noprop_models::{ClassEmbedding, ContConfig, ContMethod, EmbeddingKind, NoPropCont, Sampler};
//! use noprop_tensor::{ops, philox::RngStream, DType};
//! let cfg = ContConfig::paper(ContMethod::Fm, (1, 28, 28), 10, EmbeddingKind::OneHot, 0);
//! let mut model = NoPropCont::new(cfg, ClassEmbedding::one_hot(10))?;
//! let x = ops::randn(&[4, 1, 28, 28], DType::F32, &mut RngStream::new(0, 0))?;
//! let loss = model.train_batch(&x, &[0, 1, 2, 3], 0)?;
//! assert!(loss.total().is_finite());
//! // 20 Euler steps; the image path runs once (docs/DECISIONS.md § 17).
//! assert_eq!(model.predict(&x, Sampler::Euler, 20, true, 0)?.len(), 4);
//! assert_eq!(model.num_params(), 867_722); // Table 5, CT column, MNIST one-hot
//! # Ok::<(), noprop_models::Error>(())
//! ```
#![deny(missing_docs)]

pub mod block;
pub mod classifier;
pub mod ct;
pub mod ct_net;
pub mod dt;
pub mod embedding;
mod error;

pub use block::{ConvStack, DenoiseBlock};
pub use classifier::{ClassifierKind, OutputClassifier};
pub use ct::{ContConfig, ContLoss, ContMethod, NoPropCont, Sampler};
pub use ct_net::{row_halves, stack_row_halves, CtNet, ImageCache, TrainImageCache};
pub use dt::{BlockLoss, BlockOut, DtConfig, EmbedGrad, NoPropDt, Order};
pub use embedding::{ClassEmbedding, EmbeddingInit, EmbeddingKind};
pub use error::{Error, Result};
