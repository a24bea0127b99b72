//! The CUDA twin of `cpu.rs`: the same ops on [`CudaTensor`]s, launching
//! the kernels of `pool.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use crate::cuda::prelude::*;

/// The argmax indices of a pool on the GPU.
pub(crate) type Indices = DeviceBuffer<u32>;

/// How many indices `i` holds.
pub(crate) fn len(i: &Indices) -> usize {
    i.len()
}

/// Max-pool with the argmax of every output inside its plane, kept on the device.
pub(crate) fn max_pool2d_forward(x: &CudaTensor) -> Result<(CudaTensor, Indices)> {
    let s = x.shape().to_vec();
    let (h, w) = (s[2], s[3]);
    let dev = x.device().clone();
    let mut y = CudaTensor::uninit(&dev, &[s[0], s[1], h / 2, w / 2])?;
    let mut idx = dev.alloc::<u32>(y.numel())?;
    let (planes, h32, w32) = ((s[0] * s[1]) as u32, h as u32, w as u32);
    launch!(dev, "pool.cu", "max_pool2_fwd_f32", cfg_1d(y.numel());
        x.buf().raw(), y.buf_mut()?.raw_mut(), idx.raw_mut(), &planes, &h32, &w32);
    Ok((y, idx))
}

/// Backward: route each `dy` to its argmax.
pub(crate) fn max_pool2d_backward(
    dy: &CudaTensor,
    idx: &Indices,
    x_shape: &[usize],
) -> Result<CudaTensor> {
    let (h, w) = (x_shape[2], x_shape[3]);
    let dev = dy.device().clone();
    let mut dx = CudaTensor::zeros(&dev, x_shape)?;
    let (planes, h32, w32) = ((x_shape[0] * x_shape[1]) as u32, h as u32, w as u32);
    launch!(dev, "pool.cu", "max_pool2_bwd_f32", cfg_1d(dy.numel());
        dy.buf().raw(), idx.raw(), dx.buf_mut()?.raw_mut(), &planes, &h32, &w32);
    Ok(dx)
}
