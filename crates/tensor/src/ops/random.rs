//! Random tensors and dropout masks from the counter-based Philox generator.

use crate::philox::RngStream;
use crate::{with_dtype, DType, Device, Error, Result, Tensor};

/// A tensor of standard normals drawn from `rng` (which advances).
pub fn randn(shape: &[usize], dtype: DType, rng: &mut RngStream) -> Result<Tensor> {
    let mut t = Tensor::zeros(shape, dtype);
    with_dtype!(dtype, T, {
        rng.fill_normal::<T>(t.as_mut_slice()?);
    });
    Ok(t)
}

/// A tensor of standard normals on `device` drawn from `rng` (which
/// advances): the same numbers as [`randn`] at the same stream position,
/// drawn by a kernel on a GPU (only `f32` lives there).
pub fn randn_on(
    device: &Device,
    shape: &[usize],
    dtype: DType,
    rng: &mut RngStream,
) -> Result<Tensor> {
    match device {
        Device::Cpu => randn(shape, dtype, rng),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            if dtype != DType::F32 {
                return Err(Error::CudaUnsupported {
                    op: "randn_on",
                    why: format!("only f32 tensors live on the GPU, got {dtype:?}"),
                });
            }
            Ok(super::dev::wrap(crate::cuda::ops::randn(d, shape, rng)?))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(Error::CudaNotCompiled),
    }
}

/// A tensor of uniforms in `(0, 1)` drawn from `rng` (which advances).
pub fn rand_uniform(shape: &[usize], dtype: DType, rng: &mut RngStream) -> Result<Tensor> {
    let mut t = Tensor::zeros(shape, dtype);
    with_dtype!(dtype, T, {
        rng.fill_uniform::<T>(t.as_mut_slice()?);
    });
    Ok(t)
}

fn check_p(op: &'static str, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::InvalidArgument {
            op,
            why: format!("drop probability {p} is not in [0, 1)"),
        });
    }
    Ok(())
}

/// Integer threshold: element `i` is kept when its uniform
/// `u = ((w >> 8) + 0.5)/2²⁴` (see [`u32_to_open01`](crate::philox::u32_to_open01))
/// is `≥ p`, i.e. when `w >> 8 ≥ ⌈p·2²⁴ − 0.5⌉` — exact, no float rounding.
pub(crate) fn keep_threshold(p: f64) -> u32 {
    (p * 16_777_216.0 - 0.5).ceil().max(0.0) as u32
}

const DROP_BLOCKS: usize = 2048;

/// Fill `mask` with `scale` or 0 and, when given, `y = x ⊙ mask`, drawing one
/// word per element from `rng` (blocks keyed by position: thread-count independent).
fn dropout_fill<T: crate::Elem>(
    x: Option<&[T]>,
    y: Option<&mut [T]>,
    mask: &mut [T],
    p: f64,
    rng: &mut RngStream,
) {
    use rayon::prelude::*;
    let thr = keep_threshold(p);
    let keep = T::from_f64_lossy(1.0 / (1.0 - p));
    let (seed, stream, offset) = (rng.seed, rng.stream, rng.offset());
    let n = mask.len();
    let chunk = DROP_BLOCKS * 4;
    let fill = |ci: usize, m: &mut [T], yo: Option<&mut [T]>| {
        let base = offset + (ci * DROP_BLOCKS) as u64;
        let mut words = [0u32; DROP_BLOCKS * 4];
        let words = &mut words[..m.len()];
        crate::philox::fill_words(seed, stream, base, words);
        // Local copies: read through the closure's references, `thr` and
        // `keep` might (for LLVM) change with each write to `m`, which keeps
        // the loop scalar with a branch that mispredicts on about every
        // fifth element. Copied, the select vectorises.
        let (thr, keep) = (thr, keep);
        for (o, &wi) in m.iter_mut().zip(words.iter()) {
            *o = if (wi >> 8) >= thr { keep } else { T::zero() };
        }
        if let (Some(xs), Some(yo)) = (x, yo) {
            let xs = &xs[ci * chunk..ci * chunk + yo.len()];
            for ((yv, &xv), &mv) in yo.iter_mut().zip(xs).zip(m.iter()) {
                *yv = xv * mv;
            }
        }
    };
    match y {
        Some(y) => mask
            .par_chunks_mut(chunk)
            .zip(y.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(ci, (m, yo))| fill(ci, m, Some(yo))),
        None => mask
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(ci, m)| fill(ci, m, None)),
    }
    rng.skip(crate::philox::blocks_for(n));
}

/// An inverted-dropout mask: each element is `1/(1−p)` with probability
/// `1 − p` and `0` otherwise (kept when its uniform draw `u ≥ p`).
pub fn dropout_mask(shape: &[usize], p: f64, dtype: DType, rng: &mut RngStream) -> Result<Tensor> {
    check_p("dropout_mask", p)?;
    let mut t = Tensor::zeros(shape, dtype);
    with_dtype!(dtype, T, {
        dropout_fill::<T>(None, None, t.as_mut_slice()?, p, rng);
    });
    Ok(t)
}

/// Fused inverted dropout: returns `(x ⊙ mask, mask)` in one pass, with the
/// mask of [`dropout_mask`] (the same draws for the same stream position).
pub fn dropout_forward(x: &Tensor, p: f64, rng: &mut RngStream) -> Result<(Tensor, Tensor)> {
    check_p("dropout_forward", p)?;
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda() {
        let (y, m) = crate::cuda::ops::dropout_forward(t, p, rng)?;
        return Ok((super::dev::wrap(y), super::dev::wrap(m)));
    }
    let mut mask = x.zeros_like();
    let mut y = x.zeros_like();
    with_dtype!(x.dtype(), T, {
        dropout_fill::<T>(
            Some(x.as_slice()?),
            Some(y.as_mut_slice()?),
            mask.as_mut_slice()?,
            p,
            rng,
        );
    });
    Ok((y, mask))
}
