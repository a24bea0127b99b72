//! Flow-matching path helpers (docs/DECISIONS.md, note E), per-row noising for continuous
//! time, and the samplers of NoProp-CT/FM: Euler and Heun ODE steps and the
//! ancestral CT step of docs/DECISIONS.md, note D (i).

use noprop_tensor::{ops, Tensor};

use crate::cosine::Posterior;
use crate::{Error, Result};

/// A fixed-step ODE integrator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stepper {
    /// `z ← z + Δt·f(z, t)`.
    Euler,
    /// Heun (explicit trapezoid): `z̃ = z + Δt·f(z, t)`,
    /// `z ← z + ½Δt·(f(z, t) + f(z̃, t + Δt))`.
    Heun,
}

impl Stepper {
    /// Network evaluations per step (1 or 2).
    pub fn evals_per_step(self) -> usize {
        match self {
            Stepper::Euler => 1,
            Stepper::Heun => 2,
        }
    }

    /// One step of `dz/dt = f(z, t)` from `t` to `t + dt`.
    pub fn step<E, F>(self, z: &Tensor, t: f64, dt: f64, mut f: F) -> std::result::Result<Tensor, E>
    where
        F: FnMut(&Tensor, f64) -> std::result::Result<Tensor, E>,
        E: From<Error>,
    {
        let k1 = f(z, t)?;
        let z1 = euler_step(z, &k1, dt)?;
        match self {
            Stepper::Euler => Ok(z1),
            Stepper::Heun => {
                let k2 = f(&z1, t + dt)?;
                let mut out = euler_step(z, &k1, 0.5 * dt)?;
                ops::axpy(&mut out, 0.5 * dt, &k2).map_err(Error::from)?;
                Ok(out)
            }
        }
    }
}

/// Euler update `z + dt·v`.
pub fn euler_step(z: &Tensor, v: &Tensor, dt: f64) -> Result<Tensor> {
    Ok(ops::add_scaled(1.0, z, dt, v)?)
}

/// The ancestral CT step of docs/DECISIONS.md, note D (i):
/// `z_t = a·û_θ(z_s, x, s) + b·z_s + √c·ε` with the coefficients of
/// [`crate::LearnableSchedule::posterior`]; `eps = None` drops the noise.
pub fn ancestral_step(
    post: &Posterior,
    u_hat: &Tensor,
    z: &Tensor,
    eps: Option<&Tensor>,
) -> Result<Tensor> {
    let mut next = ops::add_scaled(post.a, u_hat, post.b, z)?;
    if let Some(e) = eps {
        ops::axpy(&mut next, post.c.max(0.0).sqrt(), e)?;
    }
    Ok(next)
}

fn check_rows(op: &str, x: &Tensor, k: &[f64]) -> Result<usize> {
    if x.rank() != 2 || x.dim(0) != k.len() {
        return Err(Error::Invalid {
            what: format!(
                "{op}: {:?} rows need {} per-row scalars",
                x.shape(),
                k.len()
            ),
        });
    }
    Ok(x.dim(1))
}

/// `α_i·a_i + β_i·b_i` row by row, for `[B, d]` matrices and per-row scalars
/// (rounded to the matrices' dtype, then two products and a sum in it):
/// [`ops::combine_rows`] on `a`'s device. The scalars are host values (the
/// per-row times and schedule values); they travel as one `[B]` tensor.
pub fn combine_rows(alpha: &[f64], a: &Tensor, beta: &[f64], b: &Tensor) -> Result<Tensor> {
    check_rows("combine_rows", a, alpha)?;
    check_rows("combine_rows", b, beta)?;
    if a.shape() != b.shape() || a.dtype() != b.dtype() {
        return Err(Error::Invalid {
            what: format!("combine_rows: shapes {:?} and {:?}", a.shape(), b.shape()),
        });
    }
    let dev = a.device();
    Ok(ops::combine_rows(
        &ops::row_coefficients(alpha, &dev)?,
        a,
        &ops::row_coefficients(beta, &dev)?,
        b,
    )?)
}

/// `k_i·x_i` row by row, `k_i` first rounded to `x`'s dtype (so the product
/// is the plain product in that dtype): [`ops::scale_rows`] on `x`'s device.
pub fn scale_rows(x: &Tensor, k: &[f64]) -> Result<Tensor> {
    check_rows("scale_rows", x, k)?;
    let k = ops::row_coefficients(k, &x.device())?.to_dtype(x.dtype());
    Ok(ops::scale_rows(x, &k)?)
}

/// Row-wise dot products `Σ_j a_ij·b_ij` ([`ops::row_dots`], added in `f64`),
/// copied to the host: `B` scalars that feed the host-side learnable
/// schedule's gradient and the logged loss (on a GPU the sums are rounded to
/// `f32`).
pub fn row_dots(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    if a.shape() != b.shape() || a.rank() != 2 {
        return Err(Error::Invalid {
            what: format!("row_dots: shapes {:?} and {:?}", a.shape(), b.shape()),
        });
    }
    Ok(ops::row_dots(a, b)?.try_to_vec_f64()?)
}

/// Continuous-time noising with one `ᾱ` per row (Algorithm 2):
/// `z_i = √ᾱ_i·u_i + √(1 − ᾱ_i)·ε_i`.
pub fn noisy_latent_rows(u: &Tensor, alpha_bar: &[f64], eps: &Tensor) -> Result<Tensor> {
    if alpha_bar.iter().any(|a| !(0.0..=1.0).contains(a)) {
        return Err(Error::Invalid {
            what: "ᾱ outside [0, 1]".into(),
        });
    }
    let sa: Vec<f64> = alpha_bar.iter().map(|a| a.sqrt()).collect();
    let sn: Vec<f64> = alpha_bar.iter().map(|a| (1.0 - a).sqrt()).collect();
    combine_rows(&sa, u, &sn, eps)
}

/// Eq. (10) of arXiv 2503.24322: the flow-matching path
/// `z_t = t·z_1 + (1 − t)·z_0 (+ σ·ε)`, one `t` per row; `eps` is used only
/// when `sigma > 0`.
pub fn fm_path(
    z0: &Tensor,
    z1: &Tensor,
    t: &[f64],
    sigma: f64,
    eps: Option<&Tensor>,
) -> Result<Tensor> {
    let one_minus: Vec<f64> = t.iter().map(|t| 1.0 - t).collect();
    let mut z = combine_rows(t, z1, &one_minus, z0)?;
    if sigma > 0.0 {
        let e = eps.ok_or_else(|| Error::Invalid {
            what: "fm_path with σ > 0 needs ε".into(),
        })?;
        ops::axpy(&mut z, sigma, e)?;
    }
    Ok(z)
}

/// The conditional vector field of Eq. (10)–(11): `z_1 − z_0`.
pub fn fm_target(z0: &Tensor, z1: &Tensor) -> Result<Tensor> {
    Ok(ops::sub(z1, z0)?)
}

/// Eq. (12) of arXiv 2503.24322: the extrapolated end point
/// `z̃_1 = z_t + (1 − t)·v_θ(z_t, x, t)`, one `t` per row.
pub fn fm_extrapolate(z_t: &Tensor, v: &Tensor, t: &[f64]) -> Result<Tensor> {
    let ones = vec![1.0; t.len()];
    let one_minus: Vec<f64> = t.iter().map(|t| 1.0 - t).collect();
    combine_rows(&ones, z_t, &one_minus, v)
}
