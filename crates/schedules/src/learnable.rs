//! The learnable continuous-time noise schedule of NoProp-CT (Appendix B of
//! arXiv 2503.24322; docs/DECISIONS.md § 9).
//!
//! `γ̃(t) = w2ᵀ softplus(W1·t + b1) + b2` with `W1 = softplus(r1)` and
//! `w2 = softplus(r2)` (width 64), so `γ̃` is increasing in `t` for *every*
//! value of the raw parameters `ψ = (r1, b1, r2, b2)`: monotone by
//! construction. Then `γ̄(t) = (γ̃(t) − γ̃(0))/(γ̃(1) − γ̃(0))` (Eq. 66),
//! `γ(t) = γ0 + (γ1 − γ0)(1 − γ̄(t))` (Eq. 67), `ᾱ(t) = σ(−γ(t))` and
//! `SNR(t) = e^{−γ(t)}` (Eq. 65). Everything is evaluated in `f64` on the
//! host (the schedule has 195 scalars), with analytic `SNR′(t)` and analytic
//! gradients with respect to `ψ`, `γ0` and `γ1`.

use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};

use crate::cosine::Posterior;
use crate::{Error, Result};

/// Numerically stable `ln(1 + eˣ)`.
pub fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else if x < -30.0 {
        x.exp()
    } else {
        x.exp().ln_1p()
    }
}

/// Numerically stable logistic `σ(x) = 1/(1 + e^{−x})`.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The schedule's quantities at one time `t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleAt {
    /// `γ(t)` (Eq. 67).
    pub gamma: f64,
    /// `γ′(t) = dγ/dt ≤ 0`.
    pub gamma_prime: f64,
    /// `ᾱ(t) = σ(−γ(t))`.
    pub alpha_bar: f64,
    /// `SNR(t) = e^{−γ(t)}` (Eq. 65).
    pub snr: f64,
    /// `SNR′(t) = −γ′(t)·e^{−γ(t)} ≥ 0`.
    pub snr_prime: f64,
}

/// `γ̃`, `γ̃′` and their gradients with respect to `ψ` at one `t`.
struct Tilde {
    g: f64,
    gp: f64,
    dg: Vec<f64>,
    dgp: Vec<f64>,
}

/// The parts of `γ̃` that do not depend on `t`: `W1 = softplus(r1)`,
/// `σ(r1)`, `w2 = softplus(r2)`, `σ(r2)`, `b1` and `b2`.
struct Psi {
    w1: Vec<f64>,
    s1: Vec<f64>,
    w2: Vec<f64>,
    s2: Vec<f64>,
    b1: Vec<f64>,
    b2: f64,
}

/// [`Psi`], the endpoints `γ0`, `γ1`, and `γ̃` at 0 and 1 with their
/// gradients: everything a time `t` needs besides `γ̃(t)`. Each value is
/// computed as the per-`t` formulas would, so the results are the same
/// numbers.
struct Prepared {
    psi: Psi,
    g0: f64,
    g1: f64,
    /// `γ̃(0)` and `γ̃(1)`.
    z: Tilde,
    o: Tilde,
}

impl Psi {
    /// `γ̃(t)`, `γ̃′(t)` and (when `grads`) their gradients w.r.t. ψ.
    fn tilde(&self, t: f64, grads: bool) -> Tilde {
        let w = self.w1.len();
        let n = if grads { 3 * w + 1 } else { 0 };
        let (mut dg, mut dgp) = (vec![0.0; n], vec![0.0; n]);
        let (mut g, mut gp) = (self.b2, 0.0);
        for j in 0..w {
            let (w1, w2) = (self.w1[j], self.w2[j]);
            let h = w1 * t + self.b1[j];
            let sh = softplus(h);
            let sig = sigmoid(h);
            g += w2 * sh;
            gp += w2 * sig * w1;
            if grads {
                let (s1, s2) = (self.s1[j], self.s2[j]);
                let dsig = sig * (1.0 - sig);
                // ∂γ̃/∂r1, ∂γ̃/∂b1, ∂γ̃/∂r2.
                dg[j] = w2 * sig * t * s1;
                dg[w + j] = w2 * sig;
                dg[2 * w + j] = sh * s2;
                // ∂γ̃′/∂r1 = w2(σ′(h)·t·W1 + σ(h))·σ(r1), ∂γ̃′/∂b1 = w2σ′(h)W1, ∂γ̃′/∂r2 = σ(h)W1σ(r2).
                dgp[j] = w2 * (dsig * t * w1 + sig) * s1;
                dgp[w + j] = w2 * dsig * w1;
                dgp[2 * w + j] = sig * w1 * s2;
            }
        }
        if grads {
            dg[3 * w] = 1.0;
        }
        Tilde { g, gp, dg, dgp }
    }
}

impl Prepared {
    /// `(γ̄(t), γ̄′(t))` from γ̃ at `t`, 0 and 1 (Eq. 66).
    fn gamma_bar(&self, t: f64) -> (f64, f64) {
        let a = self.psi.tilde(t, false);
        let (z, o) = (&self.z, &self.o);
        let den = o.g - z.g;
        ((a.g - z.g) / den, a.gp / den)
    }

    /// See [`LearnableSchedule::at`].
    fn at(&self, t: f64) -> ScheduleAt {
        let (g0, g1) = (self.g0, self.g1);
        let (gb, gbp) = self.gamma_bar(t);
        let gamma = g0 + (g1 - g0) * (1.0 - gb);
        let gamma_prime = -(g1 - g0) * gbp;
        let snr = (-gamma).exp();
        ScheduleAt {
            gamma,
            gamma_prime,
            alpha_bar: sigmoid(-gamma),
            snr,
            snr_prime: -gamma_prime * snr,
        }
    }

    /// See [`LearnableSchedule::gamma_grads`]; `n` is the parameter count.
    fn gamma_grads(&self, t: f64, n: usize) -> (ScheduleAt, Vec<f64>, Vec<f64>) {
        let w = self.psi.w1.len();
        let delta = self.g1 - self.g0;
        let a = self.psi.tilde(t, true);
        let (z, o) = (&self.z, &self.o);
        let den = o.g - z.g;
        let gb = (a.g - z.g) / den;
        let gbp = a.gp / den;
        let (mut dgamma, mut dgamma_p) = (vec![0.0; n], vec![0.0; n]);
        for k in 0..3 * w + 1 {
            let dden = o.dg[k] - z.dg[k];
            // γ̄ = (γ̃(t) − γ̃(0))/D, γ̄′ = γ̃′(t)/D, D = γ̃(1) − γ̃(0).
            let dgb = (a.dg[k] - z.dg[k]) / den - gb * dden / den;
            let dgbp = a.dgp[k] / den - gbp * dden / den;
            dgamma[k] = -delta * dgb;
            dgamma_p[k] = -delta * dgbp;
        }
        // γ = γ0 + (γ1 − γ0)(1 − γ̄): ∂γ/∂γ0 = γ̄, ∂γ/∂γ1 = 1 − γ̄; γ′ = −(γ1 − γ0)γ̄′.
        dgamma[3 * w + 1] = gb;
        dgamma[3 * w + 2] = 1.0 - gb;
        dgamma_p[3 * w + 1] = gbp;
        dgamma_p[3 * w + 2] = -gbp;
        (self.at(t), dgamma, dgamma_p)
    }

    /// See [`LearnableSchedule::grad_of`]; `n` is the parameter count.
    fn grad_of(&self, t: f64, c_alpha_bar: f64, c_snr_prime: f64, n: usize) -> Vec<f64> {
        let (at, dg, dgp) = self.gamma_grads(t, n);
        let ka = -at.alpha_bar * (1.0 - at.alpha_bar) * c_alpha_bar;
        dg.iter()
            .zip(&dgp)
            .map(|(&g, &gp)| ka * g + c_snr_prime * at.snr * (at.gamma_prime * g - gp))
            .collect()
    }
}

/// The learnable schedule of docs/DECISIONS.md § 9 (see the module docs).
///
/// Parameters live in one `f64` tensor laid out as
/// `[r1 (W), b1 (W), r2 (W), b2, γ0, γ1]` (`W` = width), so one optimiser
/// entry covers the whole schedule; [`LearnableSchedule::param_and_grad`]
/// exposes it with its gradient accumulator.
#[derive(Clone, Debug)]
pub struct LearnableSchedule {
    width: usize,
    params: Tensor,
    grad: Tensor,
}

impl LearnableSchedule {
    /// The hidden width of docs/DECISIONS.md § 9.
    pub const WIDTH: usize = 64;

    /// Width 64, `γ0 = −7`, `γ1 = 7`; `r1, b1 ~ U(−1, 1)` and
    /// `r2 ~ U(−1/8, 1/8)` (PyTorch's default ranges for `Linear(1, 64)` and
    /// `Linear(64, 1)`), `b2 = 0`, drawn from `(seed, stream)`.
    pub fn new(seed: u64, stream: u64) -> Result<Self> {
        Self::with_endpoints(Self::WIDTH, -7.0, 7.0, seed, stream)
    }

    /// A schedule of hidden width `width` with endpoints `γ0 < γ1`.
    pub fn with_endpoints(
        width: usize,
        gamma0: f64,
        gamma1: f64,
        seed: u64,
        stream: u64,
    ) -> Result<Self> {
        if width == 0 {
            return Err(Error::Invalid {
                what: "the schedule network needs a positive width".into(),
            });
        }
        if !(gamma0 < gamma1 && gamma0.is_finite() && gamma1.is_finite()) {
            return Err(Error::Invalid {
                what: format!("endpoints need γ0 < γ1, got γ0 = {gamma0}, γ1 = {gamma1}"),
            });
        }
        let mut rng = RngStream::new(seed, stream);
        let u = ops::rand_uniform(&[3 * width], DType::F64, &mut rng)?.to_vec_f64();
        let mut p = vec![0.0; 3 * width + 3];
        for j in 0..width {
            p[j] = 2.0 * u[j] - 1.0;
            p[width + j] = 2.0 * u[width + j] - 1.0;
            p[2 * width + j] = (2.0 * u[2 * width + j] - 1.0) / 8.0;
        }
        p[3 * width + 1] = gamma0;
        p[3 * width + 2] = gamma1;
        Self::from_params(width, p)
    }

    /// A schedule from its flat parameter vector `[r1, b1, r2, b2, γ0, γ1]`.
    pub fn from_params(width: usize, params: Vec<f64>) -> Result<Self> {
        if width == 0 || params.len() != 3 * width + 3 {
            return Err(Error::Invalid {
                what: format!(
                    "width {width} needs {} parameters, got {}",
                    3 * width + 3,
                    params.len()
                ),
            });
        }
        if params.iter().any(|v| !v.is_finite()) {
            return Err(Error::Invalid {
                what: "non-finite schedule parameter".into(),
            });
        }
        let n = params.len();
        let params = Tensor::from_vec(params, &[n])?;
        Ok(LearnableSchedule {
            width,
            grad: params.zeros_like(),
            params,
        })
    }

    /// Hidden width `W`.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of scalars, `3W + 3` (ψ has `3W + 1`).
    pub fn num_params(&self) -> usize {
        3 * self.width + 3
    }

    /// The flat parameter vector `[r1, b1, r2, b2, γ0, γ1]`.
    pub fn params(&self) -> Vec<f64> {
        self.params.to_vec_f64()
    }

    /// The parameter tensor and its gradient accumulator (for an optimiser).
    pub fn param_and_grad(&mut self) -> (&mut Tensor, &mut Tensor) {
        (&mut self.params, &mut self.grad)
    }

    /// The accumulated gradient `[∂/∂r1, ∂/∂b1, ∂/∂r2, ∂/∂b2, ∂/∂γ0, ∂/∂γ1]`.
    pub fn grad(&self) -> Vec<f64> {
        self.grad.to_vec_f64()
    }

    /// Zero the gradient accumulator.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }

    /// Endpoint `γ0` (= `γ(1)`, the clean end).
    pub fn gamma0(&self) -> f64 {
        self.params()[3 * self.width + 1]
    }

    /// Endpoint `γ1` (= `γ(0)`, the noisy end).
    pub fn gamma1(&self) -> f64 {
        self.params()[3 * self.width + 2]
    }

    /// The parts of `γ̃` that do not depend on `t`, computed once for any
    /// number of times `t` (a training batch asks for 128 or more).
    fn prepare(&self) -> Prepared {
        let p = self.params();
        let w = self.width;
        let (r1, b1, r2) = (&p[..w], &p[w..2 * w], &p[2 * w..3 * w]);
        let psi = Psi {
            w1: r1.iter().map(|&r| softplus(r)).collect(),
            s1: r1.iter().map(|&r| sigmoid(r)).collect(),
            w2: r2.iter().map(|&r| softplus(r)).collect(),
            s2: r2.iter().map(|&r| sigmoid(r)).collect(),
            b1: b1.to_vec(),
            b2: p[3 * w],
        };
        Prepared {
            z: psi.tilde(0.0, true),
            o: psi.tilde(1.0, true),
            psi,
            g0: p[3 * w + 1],
            g1: p[3 * w + 2],
        }
    }

    /// Eqs. 65–67 of arXiv 2503.24322 at time `t ∈ [0, 1]`: `γ(t)`, `γ′(t)`,
    /// `ᾱ(t) = σ(−γ(t))`, `SNR(t) = e^{−γ(t)}` and the analytic
    /// `SNR′(t) = −γ′(t)·e^{−γ(t)} = (γ1 − γ0)·γ̄′(t)·e^{−γ(t)}`.
    pub fn at(&self, t: f64) -> ScheduleAt {
        self.prepare().at(t)
    }

    /// [`LearnableSchedule::at`] at every time of `ts` (the same numbers,
    /// with the parts that do not depend on `t` computed once).
    pub fn at_many(&self, ts: &[f64]) -> Vec<ScheduleAt> {
        let pre = self.prepare();
        ts.iter().map(|&t| pre.at(t)).collect()
    }

    /// `γ(t)` (Eq. 67).
    pub fn gamma(&self, t: f64) -> f64 {
        self.at(t).gamma
    }

    /// `ᾱ(t) = σ(−γ(t))`.
    pub fn alpha_bar(&self, t: f64) -> f64 {
        self.at(t).alpha_bar
    }

    /// `SNR(t) = e^{−γ(t)}` (Eq. 65).
    pub fn snr(&self, t: f64) -> f64 {
        self.at(t).snr
    }

    /// `SNR′(t)`, analytic (docs/DECISIONS.md § 9): the weight of the CT L2 term in Eq. 9.
    pub fn snr_prime(&self, t: f64) -> f64 {
        self.at(t).snr_prime
    }

    /// Gradients of `γ(t)` and `γ′(t)` with respect to every parameter
    /// (`[r1, b1, r2, b2, γ0, γ1]`), with the values at `t`.
    pub fn gamma_grads(&self, t: f64) -> (ScheduleAt, Vec<f64>, Vec<f64>) {
        self.prepare().gamma_grads(t, self.num_params())
    }

    /// Gradient of `c_ᾱ·ᾱ(t) + c_s·SNR′(t)` with respect to every parameter:
    /// `∂ᾱ = −ᾱ(1 − ᾱ)·∂γ` and `∂SNR′ = e^{−γ}(γ′·∂γ − ∂γ′)`.
    pub fn grad_of(&self, t: f64, c_alpha_bar: f64, c_snr_prime: f64) -> Vec<f64> {
        self.prepare()
            .grad_of(t, c_alpha_bar, c_snr_prime, self.num_params())
    }

    /// Add `∂L/∂params` to the accumulator, where `L` depends on the schedule
    /// through `ᾱ(t_i)` and `SNR′(t_i)` with `∂L/∂ᾱ(t_i) = d_alpha_bar[i]` and
    /// `∂L/∂SNR′(t_i) = d_snr_prime[i]`.
    pub fn accumulate_grad(
        &mut self,
        ts: &[f64],
        d_alpha_bar: &[f64],
        d_snr_prime: &[f64],
    ) -> Result<()> {
        if ts.len() != d_alpha_bar.len() || ts.len() != d_snr_prime.len() {
            return Err(Error::Invalid {
                what: "times and loss gradients differ in length".into(),
            });
        }
        let mut acc = self.grad.to_vec_f64();
        let (pre, n) = (self.prepare(), self.num_params());
        for ((&t, &ca), &cs) in ts.iter().zip(d_alpha_bar).zip(d_snr_prime) {
            if ca == 0.0 && cs == 0.0 {
                continue;
            }
            for (a, g) in acc.iter_mut().zip(pre.grad_of(t, ca, cs, n)) {
                *a += g;
            }
        }
        let n = acc.len();
        self.grad = Tensor::from_vec(acc, &[n])?;
        Ok(())
    }

    /// The ancestral step coefficients of docs/DECISIONS.md, note D (i), between grid
    /// times `s < t`: with `α_{s|t} = ᾱ(s)/ᾱ(t)`,
    /// `a = √ᾱ_t(1 − α_{s|t})/(1 − ᾱ_s)`, `b = √α_{s|t}(1 − ᾱ_t)/(1 − ᾱ_s)`,
    /// `c = (1 − ᾱ_t)(1 − α_{s|t})/(1 − ᾱ_s)` (the DT update, Eq. 6, with
    /// coefficients from the continuous `ᾱ`).
    pub fn posterior(&self, s: f64, t: f64) -> Posterior {
        posterior_between(self.alpha_bar(s), self.alpha_bar(t))
    }

    /// [`LearnableSchedule::posterior`] from each time of `ts` to the next
    /// (`ts.len() − 1` of them: a sampler's whole grid), the same numbers
    /// with `ᾱ` computed once per time.
    pub fn posteriors(&self, ts: &[f64]) -> Vec<Posterior> {
        let ab: Vec<f64> = self.at_many(ts).iter().map(|a| a.alpha_bar).collect();
        ab.windows(2)
            .map(|w| posterior_between(w[0], w[1]))
            .collect()
    }

    /// `D_KL(q(z_0|y) ‖ N(0, I)) = ½[ᾱ_0‖u‖² − d·ᾱ_0 − d·ln(1 − ᾱ_0)]` with
    /// `ᾱ_0 = ᾱ(0)` (Eq. 9) for one embedding of squared norm `u_sq_norm`.
    pub fn kl_z0(&self, u_sq_norm: f64, d: usize) -> f64 {
        kl_z0(self.alpha_bar(0.0), u_sq_norm, d)
    }

    /// The probability-flow ODE of docs/DECISIONS.md, note D (ii), written as
    /// `dz/dt = k_u·û + k_z·z` with `k_u = −½γ′(t)√ᾱ(t)` and
    /// `k_z = ½γ′(t)ᾱ(t)`; returns `(k_u, k_z)`.
    pub fn pf_ode_coeffs(&self, t: f64) -> (f64, f64) {
        let at = self.at(t);
        (
            -0.5 * at.gamma_prime * at.alpha_bar.sqrt(),
            0.5 * at.gamma_prime * at.alpha_bar,
        )
    }
}

/// The posterior coefficients from `ᾱ_s` to `ᾱ_t` (see
/// [`LearnableSchedule::posterior`]), with `α = ᾱ_s/ᾱ_t`.
fn posterior_between(ab_s: f64, ab_t: f64) -> Posterior {
    let al = ab_s / ab_t;
    Posterior {
        a: ab_t.sqrt() * (1.0 - al) / (1.0 - ab_s),
        b: al.sqrt() * (1.0 - ab_t) / (1.0 - ab_s),
        c: (1.0 - ab_t) * (1.0 - al) / (1.0 - ab_s),
    }
}

/// `KL(N(√ᾱ·u, (1 − ᾱ)I) ‖ N(0, I)) = ½[ᾱ‖u‖² − dᾱ − d·ln(1 − ᾱ)]` and its
/// derivative with respect to `ᾱ` is [`kl_z0_dalpha`].
pub fn kl_z0(alpha_bar: f64, u_sq_norm: f64, d: usize) -> f64 {
    let d = d as f64;
    0.5 * (alpha_bar * u_sq_norm - d * alpha_bar - d * (1.0 - alpha_bar).ln())
}

/// `∂/∂ᾱ` of [`kl_z0`]: `½[‖u‖² − d + d/(1 − ᾱ)]`.
pub fn kl_z0_dalpha(alpha_bar: f64, u_sq_norm: f64, d: usize) -> f64 {
    let d = d as f64;
    0.5 * (u_sq_norm - d + d / (1.0 - alpha_bar))
}
