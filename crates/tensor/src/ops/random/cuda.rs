//! The CUDA twin of `cpu.rs`: the same ops on [`CudaTensor`]s, launching
//! the kernels of `random.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use crate::cuda::prelude::*;
use crate::ops::random::keep_threshold;
use crate::philox::{blocks_for, RngStream};

/// One thread per Philox block.
fn philox_cfg(n: usize) -> Option<LaunchConfig> {
    cfg_1d(n.div_ceil(4))
}

/// A tensor of standard normals drawn from `rng` (which advances): the same
/// numbers as [`crate::ops::randn`] at the same stream position.
pub(crate) fn randn(dev: &CudaDevice, shape: &[usize], rng: &mut RngStream) -> Result<CudaTensor> {
    let mut t = CudaTensor::uninit(dev, shape)?;
    let (n, seed, stream, offset) = (t.n32(), rng.seed, rng.stream, rng.offset());
    launch!(dev, "random.cu", "philox_normal_f32", philox_cfg(t.numel());
        t.buf_mut()?.raw_mut(), &n, &seed, &stream, &offset);
    rng.skip(blocks_for(t.numel()));
    Ok(t)
}

/// A tensor of uniforms in `(0, 1)` drawn from `rng` (which advances): the
/// same numbers as [`crate::ops::rand_uniform`].
pub(crate) fn rand_uniform(
    dev: &CudaDevice,
    shape: &[usize],
    rng: &mut RngStream,
) -> Result<CudaTensor> {
    let mut t = CudaTensor::uninit(dev, shape)?;
    let (n, seed, stream, offset) = (t.n32(), rng.seed, rng.stream, rng.offset());
    launch!(dev, "random.cu", "philox_uniform_f32", philox_cfg(t.numel());
        t.buf_mut()?.raw_mut(), &n, &seed, &stream, &offset);
    rng.skip(blocks_for(t.numel()));
    Ok(t)
}

fn dropout_launch(
    dev: &CudaDevice,
    x: &CudaTensor,
    y: &mut CudaTensor,
    mask: &mut CudaTensor,
    p: f64,
    rng: &mut RngStream,
) -> Result<()> {
    let thr = keep_threshold(p);
    let keep = (1.0 / (1.0 - p)) as f32;
    let (n, seed, stream, offset) = (mask.n32(), rng.seed, rng.stream, rng.offset());
    let numel = mask.numel();
    let has_x = 1i32;
    launch!(dev, "random.cu", "dropout_f32", philox_cfg(numel);
        x.buf().raw(), y.buf_mut()?.raw_mut(), mask.buf_mut()?.raw_mut(), &n, &seed,
        &stream, &offset, &thr, &keep, &has_x);
    rng.skip(blocks_for(numel));
    Ok(())
}

/// Fused inverted dropout: returns `(x ⊙ mask, mask)` in one kernel.
pub(crate) fn dropout_forward(
    x: &CudaTensor,
    p: f64,
    rng: &mut RngStream,
) -> Result<(CudaTensor, CudaTensor)> {
    let dev = x.device().clone();
    let mut mask = CudaTensor::uninit(&dev, x.shape())?;
    let mut y = CudaTensor::uninit(&dev, x.shape())?;
    dropout_launch(&dev, x, &mut y, &mut mask, p, rng)?;
    Ok((y, mask))
}
