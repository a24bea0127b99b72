//! The fixed cosine schedule of NoProp-DT (docs/DECISIONS.md § 1).

use noprop_tensor::{ops, Tensor};

use crate::{Error, Result};

/// The cosine schedule of NoProp-DT over the `T + 1` latents `z_0 … z_T`.
///
/// The paper says only "a fixed cosine noise schedule". We use the
/// Nichol–Dhariwal cosine reversed over `T + 1` latents (docs/DECISIONS.md
/// § 1 and note C (A)): `ᾱ_t = f((T+1−t)/(T+1)) / f(0)` with
/// `f(u) = cos²(((u + s)/(1 + s))·π/2)`, `s = 0.008`. Then `ᾱ_0 = 0` exactly
/// (so `SNR(0) = 0` and the KL term of Eq. 8 vanishes), and every quantity is
/// finite without clamping.
#[derive(Clone, Debug, PartialEq)]
pub struct CosineSchedule {
    alpha_bar: Vec<f64>,
}

/// Coefficients of `q(z_t | z_{t−1}, y) = N(a_t·u_y + b_t·z_{t−1}, c_t·I)`
/// (Eq. 6 and Appendix A.3), also the mean/variance of the learned step (Eq. 7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Posterior {
    /// `a_t = √ᾱ_t·(1 − α_{t−1}) / (1 − ᾱ_{t−1})`, the weight of `û`.
    pub a: f64,
    /// `b_t = √α_{t−1}·(1 − ᾱ_t) / (1 − ᾱ_{t−1})`, the skip weight of `z_{t−1}`.
    pub b: f64,
    /// `c_t = (1 − ᾱ_t)(1 − α_{t−1}) / (1 − ᾱ_{t−1})`, the variance.
    pub c: f64,
}

impl CosineSchedule {
    /// The schedule with `T` steps and offset `s = 0.008`.
    pub fn new(steps: usize) -> Result<Self> {
        Self::with_offset(steps, 0.008)
    }

    /// The schedule with `T` steps and a chosen offset `s > 0`.
    pub fn with_offset(steps: usize, s: f64) -> Result<Self> {
        if steps == 0 {
            return Err(Error::Invalid {
                what: "T must be at least 1".into(),
            });
        }
        if !(s > 0.0 && s.is_finite()) {
            return Err(Error::Invalid {
                what: format!("cosine offset s = {s} must be positive and finite"),
            });
        }
        let f = |u: f64| {
            (((u + s) / (1.0 + s)) * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        let t1 = (steps + 1) as f64;
        let alpha_bar = (0..=steps)
            .map(|t| {
                if t == 0 {
                    // f(1) = cos²(π/2) = 0 exactly; floating point gives ~1e-33.
                    0.0
                } else {
                    f((t1 - t as f64) / t1) / f(0.0)
                }
            })
            .collect();
        Ok(CosineSchedule { alpha_bar })
    }

    /// `T`, the number of denoising steps (blocks).
    pub fn steps(&self) -> usize {
        self.alpha_bar.len() - 1
    }

    /// `ᾱ_t = ∏_{s=t}^{T} α_s` for `t ∈ 0..=T`; `q(z_t | y) = N(√ᾱ_t·u_y, (1 − ᾱ_t)·I)` (Eq. 6).
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alpha_bar[t]
    }

    /// `α_t = ᾱ_t / ᾱ_{t+1}` for `t < T`, and `α_T = ᾱ_T`.
    pub fn alpha(&self, t: usize) -> f64 {
        let big_t = self.steps();
        if t == big_t {
            self.alpha_bar[big_t]
        } else {
            self.alpha_bar[t] / self.alpha_bar[t + 1]
        }
    }

    /// `SNR(t) = ᾱ_t / (1 − ᾱ_t)`.
    pub fn snr(&self, t: usize) -> f64 {
        let a = self.alpha_bar[t];
        a / (1.0 - a)
    }

    /// `SNR(t) − SNR(t−1)` for `t ∈ 1..=T`: the weight of block `t`'s L2 term in Eq. 8.
    pub fn snr_diff(&self, t: usize) -> f64 {
        self.snr(t) - self.snr(t - 1)
    }

    /// Posterior coefficients `(a_t, b_t, c_t)` for `t ∈ 1..=T` (Eq. 6, Appendix A.3).
    pub fn posterior(&self, t: usize) -> Posterior {
        let ab_t = self.alpha_bar[t];
        let ab_p = self.alpha_bar[t - 1];
        let al_p = self.alpha(t - 1);
        Posterior {
            a: ab_t.sqrt() * (1.0 - al_p) / (1.0 - ab_p),
            b: al_p.sqrt() * (1.0 - ab_t) / (1.0 - ab_p),
            c: (1.0 - ab_t) * (1.0 - al_p) / (1.0 - ab_p),
        }
    }

    /// `D_KL(q(z_0|y) ‖ N(0, I)) = ½[ᾱ_0‖u‖² − d·ᾱ_0 − d·ln(1 − ᾱ_0)]` for one
    /// embedding with squared norm `u_sq_norm` in `d` dimensions (Eq. 8;
    /// derived; docs/DECISIONS.md, note B). Zero for this schedule since `ᾱ_0 = 0`.
    pub fn kl_z0(&self, u_sq_norm: f64, d: usize) -> f64 {
        let a0 = self.alpha_bar[0];
        let d = d as f64;
        0.5 * (a0 * u_sq_norm - d * a0 - d * (1.0 - a0).ln())
    }
}

/// A sample of `q(z_t | y)`: `z = √ᾱ·u + √(1 − ᾱ)·ε` (Eq. 6), for `u` and `ε`
/// of the same shape (`ε ~ N(0, I)` drawn by the caller).
pub fn noisy_latent(u: &Tensor, alpha_bar: f64, eps: &Tensor) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&alpha_bar) {
        return Err(Error::Invalid {
            what: format!("ᾱ = {alpha_bar} is outside [0, 1]"),
        });
    }
    Ok(ops::add_scaled(
        alpha_bar.sqrt(),
        u,
        (1.0 - alpha_bar).sqrt(),
        eps,
    )?)
}
