//! [`CudaTensor`]: an `f32` tensor in device memory.

use std::sync::Arc;

use super::{CudaDevice, DeviceBuffer};
use crate::{DType, Error, Result, Tensor};

/// A dense `f32` tensor on a CUDA device: contiguous, row-major (NCHW),
/// its buffer from the device's caching allocator.
///
/// Only `f32` lives on the GPU (`f64` exists for CPU gradient checks).
/// Kernels run on the stream of the [`CudaDevice`] handle the tensor was
/// created with; copies to the host synchronise that stream.
///
/// The buffer is reference-counted and copied on write, like a host
/// [`Tensor`]'s: `clone` and `reshape` are O(1), and the first in-place op on
/// a shared buffer copies it on the device first, so values never alias.
#[derive(Clone, Debug)]
pub struct CudaTensor {
    shape: Vec<usize>,
    buf: Arc<DeviceBuffer<f32>>,
    device: CudaDevice,
}

impl PartialEq for CudaTensor {
    /// Identity, not values: equal when both share one device buffer and
    /// have the same shape (comparing values would need a device round trip;
    /// use [`CudaTensor::to_vec`]).
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && Arc::ptr_eq(&self.buf, &other.buf)
    }
}

pub(crate) fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The most elements a CUDA kernel handles: `2^31 − 1`.
///
/// The kernels count in `unsigned int`. A grid-stride loop (`NP_FOR` in
/// `common.cuh`) adds the stride (at most `256 · 2^20 = 2^28`, see
/// `cfg_1d`) to an index below `n`, and the Philox kernels compute
/// `(n + 3) / 4`; with `n < 2^31` neither can wrap past `2^32`, whereas with
/// `n` up to `2^32 − 1` the loop counter wrapped (threads never exited and
/// in-place ops applied twice).
pub(crate) const MAX_KERNEL_ELEMS: usize = i32::MAX as usize;

/// Fail unless `n` fits the kernels' 32-bit sizes ([`MAX_KERNEL_ELEMS`]).
pub(crate) fn fits_u32(op: &'static str, shape: &[usize], n: usize) -> Result<u32> {
    if n > MAX_KERNEL_ELEMS {
        return Err(Error::InvalidShape {
            op,
            shape: shape.to_vec(),
            why: "more than 2^31 − 1 elements: CUDA kernels use 32-bit sizes",
        });
    }
    Ok(n as u32)
}

impl CudaTensor {
    /// A tensor whose contents are unspecified (every caller overwrites it).
    pub(crate) fn uninit(device: &CudaDevice, shape: &[usize]) -> Result<CudaTensor> {
        let n = numel_of(shape);
        fits_u32("CudaTensor", shape, n)?;
        Ok(CudaTensor {
            shape: shape.to_vec(),
            buf: Arc::new(device.alloc::<f32>(n)?),
            device: device.clone(),
        })
    }

    /// A tensor of zeros.
    pub fn zeros(device: &CudaDevice, shape: &[usize]) -> Result<CudaTensor> {
        let mut t = CudaTensor::uninit(device, shape)?;
        t.zero()?;
        Ok(t)
    }

    /// Set every element to zero.
    pub fn zero(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let stream = self.device.stream().clone();
        let mut v = self.buf_mut()?.view_mut()?;
        stream.memset_zeros(&mut v).map_err(|e| Error::Cuda {
            op: "cuMemsetD8Async",
            why: e.to_string(),
        })
    }

    /// Copy a host `f32` slice of shape `shape` to `device`.
    pub fn from_slice(device: &CudaDevice, data: &[f32], shape: &[usize]) -> Result<CudaTensor> {
        let needed = numel_of(shape);
        if data.len() != needed {
            return Err(Error::LengthMismatch {
                op: "CudaTensor::from_slice",
                shape: shape.to_vec(),
                needed,
                len: data.len(),
            });
        }
        let mut t = CudaTensor::uninit(device, shape)?;
        if needed > 0 {
            let stream = device.stream().clone();
            let mut v = t.buf_mut()?.view_mut()?;
            stream.memcpy_htod(data, &mut v).map_err(|e| Error::Cuda {
                op: "cuMemcpyHtoDAsync",
                why: e.to_string(),
            })?;
        }
        Ok(t)
    }

    /// Copy a host tensor to `device` (it must be `f32`).
    pub fn from_host(t: &Tensor, device: &CudaDevice) -> Result<CudaTensor> {
        if t.dtype() != DType::F32 {
            return Err(Error::CudaUnsupported {
                op: "CudaTensor::from_host",
                why: format!("only f32 tensors live on the GPU, got {:?}", t.dtype()),
            });
        }
        CudaTensor::from_slice(device, t.as_slice::<f32>()?, t.shape())
    }

    /// Copy the elements to the host (synchronises the stream).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.buf.len()];
        if !out.is_empty() {
            let v = self.buf.view()?;
            self.device
                .stream()
                .memcpy_dtoh(&v, &mut out)
                .map_err(|e| Error::Cuda {
                    op: "cuMemcpyDtoHAsync",
                    why: e.to_string(),
                })?;
        }
        self.device.synchronize()?;
        Ok(out)
    }

    /// Copy to a host [`Tensor`] (synchronises the stream).
    pub fn to_host(&self) -> Result<Tensor> {
        Tensor::from_vec(self.to_vec()?, &self.shape)
    }

    /// A device-side copy with a buffer of its own (from the caching
    /// allocator); `clone` shares the buffer instead.
    pub fn try_clone(&self) -> Result<CudaTensor> {
        let mut out = CudaTensor::uninit(&self.device, &self.shape)?;
        out.copy_from(self)?;
        Ok(out)
    }

    /// Copy `src` (same shape) into `self` on the device.
    pub fn copy_from(&mut self, src: &CudaTensor) -> Result<()> {
        self.expect_shape("CudaTensor::copy_from", &src.shape)?;
        if self.buf.is_empty() || Arc::ptr_eq(&self.buf, &src.buf) {
            return Ok(());
        }
        let stream = self.device.stream().clone();
        if Arc::get_mut(&mut self.buf).is_none() {
            // Shared: the other owners keep their values; take a fresh buffer.
            self.buf = Arc::new(self.device.alloc::<f32>(self.numel())?);
        }
        let s = src.buf.view()?;
        let mut d = self.buf_mut()?.view_mut()?;
        stream.memcpy_dtod(&s, &mut d).map_err(|e| Error::Cuda {
            op: "cuMemcpyDtoDAsync",
            why: e.to_string(),
        })
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Size of dimension `i`.
    pub fn dim(&self, i: usize) -> usize {
        self.shape[i]
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.buf.len()
    }

    /// The device (and stream) this tensor's kernels run on.
    pub fn device(&self) -> &CudaDevice {
        &self.device
    }

    /// The same buffer, its kernels launched on `device`'s stream from now on
    /// (`device` must be the same GPU; no copy).
    pub fn on_stream(&self, device: &CudaDevice) -> Result<CudaTensor> {
        if device != &self.device {
            return Err(Error::DeviceMismatch {
                op: "CudaTensor::on_stream",
                why: format!(
                    "cuda:{} is not cuda:{}",
                    device.ordinal(),
                    self.device.ordinal()
                ),
            });
        }
        Ok(CudaTensor {
            shape: self.shape.clone(),
            buf: Arc::clone(&self.buf),
            device: device.clone(),
        })
    }

    /// A handle on the same data with a new shape.
    pub(crate) fn reshaped(&self, shape: &[usize]) -> Result<CudaTensor> {
        self.clone().reshape(shape)
    }

    /// Same data, new shape with the same element count.
    pub fn reshape(mut self, shape: &[usize]) -> Result<CudaTensor> {
        let needed = numel_of(shape);
        if needed != self.numel() {
            return Err(Error::LengthMismatch {
                op: "CudaTensor::reshape",
                shape: shape.to_vec(),
                needed,
                len: self.numel(),
            });
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Fail unless `self` has shape `expected`.
    pub fn expect_shape(&self, op: &'static str, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::ShapeMismatch {
                op,
                expected: expected.to_vec(),
                got: self.shape.clone(),
            });
        }
        Ok(())
    }

    /// The element count as a kernel argument.
    pub(crate) fn n32(&self) -> u32 {
        // Checked at construction (`uninit`).
        self.buf.len() as u32
    }

    pub(crate) fn buf(&self) -> &DeviceBuffer<f32> {
        &self.buf
    }

    /// The buffer for writing: copied first (copy on write) when another
    /// tensor shares it.
    pub(crate) fn buf_mut(&mut self) -> Result<&mut DeviceBuffer<f32>> {
        if Arc::get_mut(&mut self.buf).is_none() {
            let mut fresh = self.device.alloc::<f32>(self.numel())?;
            if !fresh.is_empty() {
                let stream = self.device.stream().clone();
                let s = self.buf.view()?;
                let mut d = fresh.view_mut()?;
                stream.memcpy_dtod(&s, &mut d).map_err(|e| Error::Cuda {
                    op: "cuMemcpyDtoDAsync",
                    why: e.to_string(),
                })?;
            }
            self.buf = Arc::new(fresh);
        }
        Arc::get_mut(&mut self.buf).ok_or(Error::Cuda {
            op: "CudaTensor::buf_mut",
            why: "buffer still shared after copy on write".into(),
        })
    }
}

impl Tensor {
    /// Copy to the GPU of `device` (f32 only): [`CudaTensor::from_host`].
    /// Back with [`CudaTensor::to_host`].
    pub fn to_cuda(&self, device: &CudaDevice) -> Result<CudaTensor> {
        CudaTensor::from_host(self, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_sizes_stop_below_the_counter_wrap() {
        assert_eq!(fits_u32("t", &[7], 7).unwrap(), 7);
        let max = MAX_KERNEL_ELEMS;
        assert_eq!(fits_u32("t", &[max], max).unwrap() as usize, max);
        // One more, and everything up to the old u32 limit, is refused.
        for n in [max + 1, u32::MAX as usize, u32::MAX as usize + 1] {
            let e = fits_u32("t", &[n], n).unwrap_err().to_string();
            assert!(e.contains("2^31 − 1"), "{e}");
        }
        // The largest stride of a 1-D launch plus the largest index stays
        // below 2^32, and so does the Philox block count's `n + 3`.
        let stride = (crate::cuda::launch::BLOCK as u64) << 20;
        assert!(max as u64 - 1 + stride < 1 << 32);
        assert!(max as u64 + 3 < 1 << 32);
    }
}
