//! [`CudaTensor`]: an `f32` tensor in device memory.

use super::{CudaDevice, DeviceBuffer};
use crate::{DType, Error, Result, Tensor};

/// A dense `f32` tensor on a CUDA device: contiguous, row-major (NCHW),
/// its buffer from the device's caching allocator.
///
/// Only `f32` lives on the GPU (`f64` exists for CPU gradient checks).
/// Kernels run on the stream of the [`CudaDevice`] handle the tensor was
/// created with; copies to the host synchronise that stream.
#[derive(Debug)]
pub struct CudaTensor {
    shape: Vec<usize>,
    buf: DeviceBuffer<f32>,
    device: CudaDevice,
}

pub(crate) fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Fail unless `n` fits the kernels' 32-bit sizes.
pub(crate) fn fits_u32(op: &'static str, shape: &[usize], n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::InvalidShape {
        op,
        shape: shape.to_vec(),
        why: "more than 2^32 − 1 elements: CUDA kernels use 32-bit sizes",
    })
}

impl CudaTensor {
    /// A tensor whose contents are unspecified (every caller overwrites it).
    pub(crate) fn uninit(device: &CudaDevice, shape: &[usize]) -> Result<CudaTensor> {
        let n = numel_of(shape);
        fits_u32("CudaTensor", shape, n)?;
        Ok(CudaTensor {
            shape: shape.to_vec(),
            buf: device.alloc::<f32>(n)?,
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
        let mut v = self.buf.view_mut()?;
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
            let mut v = t.buf.view_mut()?;
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

    /// A device-side copy (from the caching allocator).
    pub fn try_clone(&self) -> Result<CudaTensor> {
        let mut out = CudaTensor::uninit(&self.device, &self.shape)?;
        out.copy_from(self)?;
        Ok(out)
    }

    /// Copy `src` (same shape) into `self` on the device.
    pub fn copy_from(&mut self, src: &CudaTensor) -> Result<()> {
        self.expect_shape("CudaTensor::copy_from", &src.shape)?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let stream = self.device.stream().clone();
        let s = src.buf.view()?;
        let mut d = self.buf.view_mut()?;
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

    pub(crate) fn buf_mut(&mut self) -> &mut DeviceBuffer<f32> {
        &mut self.buf
    }
}

impl Tensor {
    /// Copy to the GPU of `device` (f32 only): [`CudaTensor::from_host`].
    /// Back with [`CudaTensor::to_host`].
    pub fn to_cuda(&self, device: &CudaDevice) -> Result<CudaTensor> {
        CudaTensor::from_host(self, device)
    }
}
