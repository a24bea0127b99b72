//! Fused optimiser updates: one pass over a parameter tensor per step.

use rayon::prelude::*;

#[allow(unused_imports)]
use super::num::*;

use super::CHUNK;
use crate::{with_dtype, Elem, Error, Result, Tensor};

/// Adam / AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Denominator ε.
    pub eps: f64,
    /// Weight decay λ.
    pub weight_decay: f64,
    /// AdamW (Loshchilov & Hutter): `θ ← θ·(1 − lr·λ)` before the Adam step.
    /// Otherwise Adam with coupled L2: `g ← g + λ·θ`.
    pub decoupled: bool,
}

fn check4(op: &'static str, p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> Result<()> {
    super::same_shape(op, p, g)?;
    super::same_shape(op, p, m)?;
    super::same_shape(op, p, v)
}

/// One Adam/AdamW step (PyTorch's formulation) at step number `t ≥ 1`:
///
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `θ ← θ − (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε)`.
pub fn adam_update(
    param: &mut Tensor,
    grad: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    h: &AdamHyper,
    t: u64,
) -> Result<()> {
    #[cfg(feature = "cuda")]
    if super::dev::same_kind("adam_update", param, &[grad, m, v])? {
        use super::dev::{get, get_mut};
        let g = get("adam_update", grad)?;
        let (m, v) = (get_mut("adam_update", m)?, get_mut("adam_update", v)?);
        return crate::cuda::ops::adam_update(get_mut("adam_update", param)?, g, m, v, h, t);
    }
    check4("adam_update", param, grad, m, v)?;
    if t == 0 {
        return Err(Error::InvalidArgument {
            op: "adam_update",
            why: "the step number starts at 1".into(),
        });
    }
    let bc1 = 1.0 - h.beta1.powf(t as f64);
    let bc2 = 1.0 - h.beta2.powf(t as f64);
    with_dtype!(param.dtype(), T, {
        let c = |x: f64| T::from_f64_lossy(x);
        let (b1, b2, eps) = (c(h.beta1), c(h.beta2), c(h.eps));
        let step = c(h.lr / bc1);
        let sqrt_bc2 = c(bc2.sqrt());
        let wd = c(h.weight_decay);
        let decay = c(1.0 - h.lr * h.weight_decay);
        let decoupled = h.decoupled;
        let gs = grad.as_slice::<T>()?;
        param
            .as_mut_slice::<T>()?
            .par_chunks_mut(CHUNK)
            .zip(m.as_mut_slice::<T>()?.par_chunks_mut(CHUNK))
            .zip(v.as_mut_slice::<T>()?.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(ci, ((pc, mc), vc))| {
                // Scalars copied in and slices zipped: this lets LLVM
                // vectorise the loop (captured by reference, the scalars
                // might alias the written slices; indexed, every access is
                // bounds-checked). The arithmetic per element is unchanged.
                let (b1, b2, eps, step, sqrt_bc2, wd, decay) =
                    (b1, b2, eps, step, sqrt_bc2, wd, decay);
                let gc = &gs[ci * CHUNK..ci * CHUNK + pc.len()];
                let lanes = pc.iter_mut().zip(mc.iter_mut()).zip(vc.iter_mut()).zip(gc);
                for (((pj, mj), vj), &gj) in lanes {
                    let (mut g, mut p) = (gj, *pj);
                    if decoupled {
                        p *= decay;
                    } else {
                        g += wd * p;
                    }
                    let mm = b1 * *mj + (T::one() - b1) * g;
                    let vv = b2 * *vj + (T::one() - b2) * g * g;
                    *mj = mm;
                    *vj = vv;
                    *pj = p - step * mm / (vv.sqrt() / sqrt_bc2 + eps);
                }
            });
    });
    Ok(())
}

/// One SGD step with momentum μ and coupled weight decay λ (PyTorch's rule,
/// no dampening): `g ← g + λθ`, `b ← μb + g`, `θ ← θ − lr·b`.
pub fn sgd_momentum_update(
    param: &mut Tensor,
    grad: &Tensor,
    buf: &mut Tensor,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> Result<()> {
    #[cfg(feature = "cuda")]
    if super::dev::same_kind("sgd_momentum_update", param, &[grad, buf])? {
        use super::dev::{get, get_mut};
        let g = get("sgd_momentum_update", grad)?;
        let b = get_mut("sgd_momentum_update", buf)?;
        let p = get_mut("sgd_momentum_update", param)?;
        return crate::cuda::ops::sgd_momentum_update(p, g, b, lr, momentum, weight_decay);
    }
    super::same_shape("sgd_momentum_update", param, grad)?;
    super::same_shape("sgd_momentum_update", param, buf)?;
    with_dtype!(param.dtype(), T, {
        let (lr, mu, wd) = (
            T::from_f64_lossy(lr),
            T::from_f64_lossy(momentum),
            T::from_f64_lossy(weight_decay),
        );
        let gs = grad.as_slice::<T>()?;
        param
            .as_mut_slice::<T>()?
            .par_chunks_mut(CHUNK)
            .zip(buf.as_mut_slice::<T>()?.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(ci, (pc, bc))| {
                let g0 = ci * CHUNK;
                for j in 0..pc.len() {
                    let g = gs[g0 + j] + wd * pc[j];
                    bc[j] = mu * bc[j] + g;
                    pc[j] -= lr * bc[j];
                }
            });
    });
    Ok(())
}
