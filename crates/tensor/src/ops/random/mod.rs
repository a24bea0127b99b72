//! Random tensors and dropout masks from the counter-based Philox generator.
//!
//! A host draw and a device draw at the same stream position give the same
//! numbers (the GPU kernels in `random.cu` compute the same Philox blocks).

mod cpu;

use super::dev;
use crate::cuda::kernels::random as cuda;
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

/// Fail unless `dtype` can live on `device` (only `f32` lives on a GPU).
fn check_dtype_on(op: &'static str, device: &Device, dtype: DType) -> Result<()> {
    if !device.is_cpu() && dtype != DType::F32 {
        return Err(Error::CudaUnsupported {
            op,
            why: format!("only f32 tensors live on the GPU, got {dtype:?}"),
        });
    }
    Ok(())
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
    check_dtype_on("randn_on", device, dtype)?;
    match device {
        Device::Cpu => randn(shape, dtype, rng),
        Device::Cuda(d) => Ok(dev::wrap(cuda::randn(d, shape, rng)?)),
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

/// A tensor of uniforms in `(0, 1)` on `device`: the same numbers as
/// [`rand_uniform`] at the same stream position.
pub fn rand_uniform_on(
    device: &Device,
    shape: &[usize],
    dtype: DType,
    rng: &mut RngStream,
) -> Result<Tensor> {
    check_dtype_on("rand_uniform_on", device, dtype)?;
    match device {
        Device::Cpu => rand_uniform(shape, dtype, rng),
        Device::Cuda(d) => Ok(dev::wrap(cuda::rand_uniform(d, shape, rng)?)),
    }
}

/// Integer threshold: element `i` is kept when its uniform
/// `u = ((w >> 8) + 0.5)/2²⁴` (see [`u32_to_open01`](crate::philox::u32_to_open01))
/// is `≥ p`, i.e. when `w >> 8 ≥ ⌈p·2²⁴ − 0.5⌉` — exact, no float rounding;
/// both backends compare the same integers.
pub(crate) fn keep_threshold(p: f64) -> u32 {
    (p * 16_777_216.0 - 0.5).ceil().max(0.0) as u32
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

/// An inverted-dropout mask: each element is `1/(1−p)` with probability
/// `1 − p` and `0` otherwise (kept when its uniform draw `u ≥ p`).
pub fn dropout_mask(shape: &[usize], p: f64, dtype: DType, rng: &mut RngStream) -> Result<Tensor> {
    check_p("dropout_mask", p)?;
    let mut t = Tensor::zeros(shape, dtype);
    with_dtype!(dtype, T, {
        cpu::dropout_fill::<T>(None, None, t.as_mut_slice()?, p, rng);
    });
    Ok(t)
}

/// Fused inverted dropout: returns `(x ⊙ mask, mask)` in one pass, with the
/// mask of [`dropout_mask`] (the same draws for the same stream position).
pub fn dropout_forward(x: &Tensor, p: f64, rng: &mut RngStream) -> Result<(Tensor, Tensor)> {
    check_p("dropout_forward", p)?;
    if let Some([t]) = dev::all("dropout_forward", [x])? {
        let (y, m) = cuda::dropout_forward(t, p, rng)?;
        return Ok((dev::wrap(y), dev::wrap(m)));
    }
    let mut mask = x.zeros_like();
    let mut y = x.zeros_like();
    with_dtype!(x.dtype(), T, {
        cpu::dropout_fill::<T>(
            Some(x.as_slice()?),
            Some(y.as_mut_slice()?),
            mask.as_mut_slice()?,
            p,
            rng,
        );
    });
    Ok((y, mask))
}
