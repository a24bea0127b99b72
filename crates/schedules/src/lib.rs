//! # noprop-schedules
//!
//! Noise schedules for NoProp (Li, Teh, Pascanu, arXiv 2503.24322).
//!
//! Time runs *opposite* to DDPM: `z_0` is pure noise and `z_T` is closest to
//! the label embedding `u_y`. With per-step `α_0 … α_T`, the cumulative
//! product runs *up* to `T`: `ᾱ_t = ∏_{s=t}^{T} α_s`, so `ᾱ_t` increases with
//! `t` and `SNR(t) = ᾱ_t/(1 − ᾱ_t)` does too.
//!
//! ```
//! use noprop_schedules::CosineSchedule;
//! let s = CosineSchedule::new(10)?;
//! assert_eq!(s.alpha_bar(0), 0.0);                      // z_0 is pure noise
//! assert!((s.alpha_bar(10) - 0.9766).abs() < 1e-4);      // z_T is nearly u_y
//! let p = s.posterior(1);                                // first step: no skip
//! assert_eq!(p.b, 0.0);
//! # Ok::<(), noprop_schedules::Error>(())
//! ```
//!
//! NoProp-CT learns its schedule ([`LearnableSchedule`], docs/DECISIONS.md § 9):
//!
//! ```
//! use noprop_schedules::LearnableSchedule;
//! let s = LearnableSchedule::new(0, 0)?;
//! assert!((s.gamma(0.0) - 7.0).abs() < 1e-12 && (s.gamma(1.0) + 7.0).abs() < 1e-12);
//! assert!(s.alpha_bar(0.3) < s.alpha_bar(0.7));      // ᾱ increases with t
//! assert!(s.snr_prime(0.5) > 0.0);
//! # Ok::<(), noprop_schedules::Error>(())
//! ```
#![deny(missing_docs)]

mod cosine;
mod error;
pub mod learnable;
pub mod ode;

pub use cosine::{noisy_latent, CosineSchedule, Posterior};
pub use error::{Error, Result};
pub use learnable::{LearnableSchedule, ScheduleAt};
pub use ode::{ancestral_step, euler_step, fm_extrapolate, fm_path, fm_target, Stepper};
