//! Per-row operations on `[B, d]` matrices: rows scaled or combined by
//! per-row coefficients (a `[B]` tensor), row dot products, sums and
//! maximum magnitudes, the
//! arg-max of each row, the squared-distance scores of the posterior
//! classifier, and the sinusoidal time embedding with its backward pass.
//!
//! These are the per-sample data paths of NoProp-CT/FM, the classifiers and
//! the baselines; the shape, dtype and device checks are done here once, then
//! each op runs on the host (`cpu.rs`, bit-for-bit the arithmetic the callers
//! used to do on host slices) or on a GPU (`cuda.rs`, kernels in `rows.cu`).
//!
//! Per-row reductions ([`row_dots`], [`row_sums`]) add the columns of a row in
//! index order in `f64`. On the host their result is an `f64` tensor (the
//! exact `f64` sum); on a GPU only `f32` tensors exist, so the `f64` sum is
//! rounded to `f32`. [`row_coefficients`] builds a per-row coefficient
//! tensor the same way (`f64` on the host, `f32` on a GPU).

mod cpu;

use super::{dev, rank};
use crate::cuda::kernels::rows as cuda;
use crate::{Device, Error, Result, Tensor};

fn per_row(op: &'static str, x: &Tensor, k: &Tensor) -> Result<()> {
    rank(op, x, 2)?;
    if k.rank() != 1 || k.dim(0) != x.dim(0) {
        return Err(Error::ShapeMismatch {
            op,
            expected: vec![x.dim(0)],
            got: k.shape().to_vec(),
        });
    }
    Ok(())
}

/// A per-row coefficient tensor `[B]` holding `k` on `device`: `f64` on the
/// host (the values exactly), `f32` on a GPU (the values rounded, as every
/// GPU tensor is `f32`).
pub fn row_coefficients(k: &[f64], device: &Device) -> Result<Tensor> {
    let t = Tensor::from_slice(k, &[k.len()])?;
    if device.is_cpu() {
        Ok(t)
    } else {
        t.to_dtype(crate::DType::F32).to_device(device)
    }
}

/// `out_ij = k_i·x_ij` for `x: [B, d]`, `k: [B]`: the product is formed in
/// `f64` (exact for `f32` operands) and rounded to `x`'s dtype, so an `f32`
/// `k` gives the plain `f32` product and an `f64` `k` the `f64` product of
/// the unrounded coefficient.
pub fn scale_rows(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    per_row("scale_rows", x, k)?;
    match dev::all("scale_rows", [x, k])? {
        None => cpu::scale_rows(x, k),
        Some([x, k]) => Ok(dev::wrap(cuda::scale_rows(x, k)?)),
    }
}

/// `out_ij = α_i·a_ij + β_i·b_ij` for `a, b: [B, d]`, `α, β: [B]`; the
/// coefficients are first converted to `a`'s dtype, then the two products and
/// the sum are each rounded in that dtype.
pub fn combine_rows(alpha: &Tensor, a: &Tensor, beta: &Tensor, b: &Tensor) -> Result<Tensor> {
    super::same_shape("combine_rows", a, b)?;
    per_row("combine_rows", a, alpha)?;
    per_row("combine_rows", b, beta)?;
    match dev::all("combine_rows", [alpha, a, beta, b])? {
        None => cpu::combine_rows(alpha, a, beta, b),
        Some([alpha, a, beta, b]) => Ok(dev::wrap(cuda::combine_rows(alpha, a, beta, b)?)),
    }
}

/// Row dot products `out_i = Σ_j a_ij·b_ij` (`[B]`), added in column order
/// in `f64` (see the module doc for the result's dtype).
pub fn row_dots(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    super::same_shape("row_dots", a, b)?;
    rank("row_dots", a, 2)?;
    match dev::all("row_dots", [a, b])? {
        None => cpu::row_dots(a, Some(b)),
        Some([a, b]) => Ok(dev::wrap(cuda::row_reduce(a, Some(b))?)),
    }
}

/// Row sums `out_i = Σ_j a_ij` (`[B]`), added in column order in `f64`
/// (see the module doc for the result's dtype). Not [`super::sum_rows`],
/// which sums the rows together (column sums).
pub fn row_sums(a: &Tensor) -> Result<Tensor> {
    rank("row_sums", a, 2)?;
    match dev::all("row_sums", [a])? {
        None => cpu::row_dots(a, None),
        Some([t]) => Ok(dev::wrap(cuda::row_reduce(t, None)?)),
    }
}

/// Row maxima of the magnitudes, `out_i = max(0, max_j |a_ij|)` (`[B]`; a
/// NaN entry is skipped, as `f64::max` does), in `f64` on the host and `f32`
/// on a GPU (exact either way: no rounding happens).
pub fn row_max_abs(a: &Tensor) -> Result<Tensor> {
    rank("row_max_abs", a, 2)?;
    match dev::all("row_max_abs", [a])? {
        None => cpu::row_max_abs(a),
        Some([t]) => Ok(dev::wrap(cuda::row_max_abs(t)?)),
    }
}

/// The index of the largest entry of each row of `x: [B, m]`, copied to the
/// host: a scan keeping the first index `j` with `x_ij > x_i,best` (the first
/// one on ties; a comparison with NaN is false, so a NaN never replaces the
/// running best).
pub fn argmax_rows(x: &Tensor) -> Result<Vec<usize>> {
    rank("argmax_rows", x, 2)?;
    match dev::all("argmax_rows", [x])? {
        None => cpu::argmax_rows(x),
        Some([t]) => cuda::argmax_rows(t),
    }
}

/// The posterior classifier's scores (Eqs. 15–16 of arXiv 2503.24322):
/// `s_iy = −(‖a_i‖² + ‖w_y‖² − 2·c_iy)·k` with `c = a·wᵀ: [B, m]`, the
/// squared norms `an: [B]`, `wn: [m]` (from [`row_dots`]) and `k = 1/(2σ²)`;
/// formed in `f64` and rounded to `cross`'s dtype.
pub fn sq_dist_scores(cross: &Tensor, an: &Tensor, wn: &Tensor, k: f64) -> Result<Tensor> {
    per_row("sq_dist_scores", cross, an)?;
    if wn.rank() != 1 || wn.dim(0) != cross.dim(1) {
        return Err(Error::ShapeMismatch {
            op: "sq_dist_scores",
            expected: vec![cross.dim(1)],
            got: wn.shape().to_vec(),
        });
    }
    match dev::all("sq_dist_scores", [cross, an, wn])? {
        None => cpu::sq_dist_scores(cross, an, wn, k),
        Some([c, an, wn]) => Ok(dev::wrap(cuda::sq_dist_scores(c, an, wn, k)?)),
    }
}

fn time_input(op: &'static str, t: &Tensor, dim: usize) -> Result<usize> {
    let b = t.shape().first().copied().unwrap_or(0);
    if t.rank() == 0 || t.rank() > 2 || t.numel() != b {
        return Err(Error::InvalidShape {
            op,
            shape: t.shape().to_vec(),
            why: "expected times of shape [B] or [B, 1]",
        });
    }
    if dim == 0 || dim % 2 != 0 {
        return Err(Error::InvalidArgument {
            op,
            why: format!("the embedding width {dim} must be even and positive"),
        });
    }
    Ok(b)
}

/// The sinusoidal time embedding of NoProp-CT/FM:
/// `emb(t) = [sin(t·ω_0), …, sin(t·ω_{h−1}), cos(t·ω_0), …, cos(t·ω_{h−1})]`,
/// `ω_k = exp(−ln(10000)·k/h)`, `h = dim/2`, `t` unscaled; `t: [B]` or
/// `[B, 1]`, output `[B, dim]`. The angles and the sines/cosines are formed
/// in `f64` and rounded to `t`'s dtype.
pub fn time_embedding(t: &Tensor, dim: usize) -> Result<Tensor> {
    let b = time_input("time_embedding", t, dim)?;
    match dev::all("time_embedding", [t])? {
        None => cpu::time_embedding(t, b, dim),
        Some([c]) => Ok(dev::wrap(cuda::time_embedding(c, b, dim)?)),
    }
}

/// Backward of [`time_embedding`]:
/// `∂L/∂t_i = Σ_k ω_k·(cos(t_iω_k)·dy_{i,k} − sin(t_iω_k)·dy_{i,h+k})`,
/// added over `k` in order in `f64`; the result has `t`'s shape.
pub fn time_embedding_backward(t: &Tensor, dy: &Tensor, dim: usize) -> Result<Tensor> {
    let b = time_input("time_embedding_backward", t, dim)?;
    if dy.shape() != [b, dim] {
        return Err(Error::ShapeMismatch {
            op: "time_embedding_backward",
            expected: vec![b, dim],
            got: dy.shape().to_vec(),
        });
    }
    t.expect_dtype("time_embedding_backward", dy.dtype())?;
    match dev::all("time_embedding_backward", [t, dy])? {
        None => cpu::time_embedding_backward(t, dy, dim),
        Some([c, g]) => Ok(dev::wrap(cuda::time_embedding_backward(c, g, dim)?)),
    }
}

/// `ω_k = exp(−ln(10000)·k/h)` for `k < h` (the frequencies of
/// [`time_embedding`] with `h = dim/2`).
pub fn time_frequencies(h: usize) -> Vec<f64> {
    (0..h)
        .map(|i| (-(10000f64).ln() * i as f64 / h as f64).exp())
        .collect()
}
