//! The CPU reference of [`super`]: fixed chunks of
//! [`CHUNK`](crate::ops::CHUNK) elements on rayon. Operands were checked
//! by the API.

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use super::AdamHyper;
use crate::ops::CHUNK;
use crate::{with_dtype, Elem, Result, Tensor};

pub(super) fn adam_update(
    param: &mut Tensor,
    grad: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    h: &AdamHyper,
    t: u64,
) -> Result<()> {
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

pub(super) fn sgd_momentum_update(
    param: &mut Tensor,
    grad: &Tensor,
    buf: &mut Tensor,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> Result<()> {
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
