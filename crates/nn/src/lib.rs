//! # noprop-nn
//!
//! Layers with explicit forward and backward passes, losses, optimisers,
//! PyTorch-default initialisation and safetensors checkpoints.
//!
//! There is no global tape: each [`Module`] caches what its own backward
//! needs, so gradients stay inside the module that produced them — which is
//! the point of NoProp, where each block learns from a local target.
//!
//! ```
//! use noprop_nn::{layers::{Linear, ReLU, Sequential}, loss, optim::{Adam, Optimizer}, Mode, Module};
//! use noprop_tensor::Tensor;
//! let mut net = Sequential::new()
//!     .push("fc1", Linear::new(4, 8, 0, "fc1"))
//!     .push("relu", ReLU::new())
//!     .push("fc2", Linear::new(8, 3, 0, "fc2"));
//! let x = Tensor::from_vec(vec![0.5f32; 8], &[2, 4])?;
//! let mut opt = Adam::adamw(1e-3, 1e-3);
//! let logits = net.forward(&x, Mode::Train)?;
//! let (l, dlogits) = loss::cross_entropy(&logits, &[0, 2])?;
//! net.backward(&dlogits)?;
//! opt.step(net.params())?;
//! net.zero_grad();
//! assert!(l > 0.0);
//! assert_eq!(net.params()[0].name, "fc1.weight");
//! # Ok::<(), noprop_nn::Error>(())
//! ```
#![deny(missing_docs)]

mod error;
pub mod init;
pub mod io;
pub mod layers;
pub mod loss;
mod module;
pub mod optim;
pub mod state;

pub use error::{Error, Result};
pub use module::{prefixed, Mode, Module, ParamMut};
