//! The [`Tensor`] type: a contiguous, row-major array of `f32` or `f64` on one device.

use std::sync::Arc;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Dimension, IxDyn};

use crate::cuda::CudaTensor;
use crate::storage::{get_vec, get_vec_mut, unwrap_vec, wrap_vec, Storage};
use crate::{DType, Device, Elem, Error, Result};

/// A dense tensor: contiguous, row-major (NCHW for images), owning its storage.
///
/// The storage is reference-counted and copied on write: `clone` is O(1) (a
/// layer caching its input for backward costs nothing), and the first
/// mutation of a shared tensor copies it, so values never alias.
///
/// Layers and models only ever call tensor operations (the [`ops`](crate::ops)
/// module and the methods here), never the storage directly, so a device
/// backend can be swapped in underneath: with the `cuda` feature a tensor
/// may live on a GPU ([`Tensor::to_device`]), every op in [`ops`](crate::ops)
/// runs where its inputs live (mixed devices are an
/// [`Error::DeviceMismatch`]), and the host-only accessors (`as_slice`,
/// `view`, `into_vec`, …) return [`Error::NotOnHost`] for a device tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<Storage>,
}

fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        let n = numel_of(shape);
        let storage = match dtype {
            DType::F32 => Storage::F32(vec![0.0; n]),
            DType::F64 => Storage::F64(vec![0.0; n]),
        };
        Tensor {
            shape: shape.to_vec(),
            storage: Arc::new(storage),
        }
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        let mut t = Tensor::zeros(shape, dtype);
        t.fill(value);
        t
    }

    /// Zeros with the shape, dtype and device of `self`.
    ///
    /// Should a device allocation fail, the zeros are on the host (the next
    /// op then reports the device mismatch); [`Tensor::try_zeros_like`]
    /// returns the error instead.
    pub fn zeros_like(&self) -> Tensor {
        self.try_zeros_like()
            .unwrap_or_else(|_| Tensor::zeros(&self.shape, self.dtype()))
    }

    /// Take ownership of `data` as a tensor of shape `shape`.
    pub fn from_vec<T: Elem>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let needed = numel_of(shape);
        if data.len() != needed {
            return Err(Error::LengthMismatch {
                op: "Tensor::from_vec",
                shape: shape.to_vec(),
                needed,
                len: data.len(),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Arc::new(wrap_vec(data)),
        })
    }

    /// Copy `data` into a new tensor of shape `shape`.
    pub fn from_slice<T: Elem>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// A scalar (rank-0) tensor.
    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Tensor::full(&[], value, dtype)
    }

    /// Copy an ndarray array (any layout) into a new tensor.
    pub fn from_ndarray<T: Elem, S: ndarray::Data<Elem = T>, D: Dimension>(
        a: &ndarray::ArrayBase<S, D>,
    ) -> Tensor {
        let shape = a.shape().to_vec();
        let data = match a.as_slice() {
            Some(s) => s.to_vec(),
            None => a.iter().copied().collect(),
        };
        Tensor {
            shape,
            storage: Arc::new(wrap_vec(data)),
        }
    }

    /// Copy into an owned ndarray array.
    pub fn to_ndarray<T: Elem>(&self) -> Result<ArrayD<T>> {
        Ok(self.view::<T>()?.to_owned())
    }

    /// Borrow as an ndarray view (no copy).
    pub fn view<T: Elem>(&self) -> Result<ArrayViewD<'_, T>> {
        let s = self.as_slice::<T>()?;
        ArrayViewD::from_shape(IxDyn(&self.shape), s).map_err(|_| Error::InvalidShape {
            op: "Tensor::view",
            shape: self.shape.clone(),
            why: "not representable as an ndarray view",
        })
    }

    /// Borrow mutably as an ndarray view (no copy).
    pub fn view_mut<T: Elem>(&mut self) -> Result<ArrayViewMutD<'_, T>> {
        let shape = self.shape.clone();
        let s = self.as_mut_slice::<T>()?;
        ArrayViewMutD::from_shape(IxDyn(&shape), s).map_err(|_| Error::InvalidShape {
            op: "Tensor::view_mut",
            shape,
            why: "not representable as an ndarray view",
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
        match &*self.storage {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            Storage::Cuda(t) => t.numel(),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match &*self.storage {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
            Storage::Cuda(_) => DType::F32,
        }
    }

    /// The device holding the storage.
    pub fn device(&self) -> Device {
        match &*self.storage {
            Storage::Cuda(t) => Device::Cuda(t.device().clone()),
            _ => Device::Cpu,
        }
    }

    /// True when the storage is in host memory.
    pub fn is_on_host(&self) -> bool {
        !matches!(&*self.storage, Storage::Cuda(_))
    }

    /// Fail with [`Error::NotOnHost`] unless the storage is in host memory.
    pub fn expect_host(&self, op: &'static str) -> Result<()> {
        if self.is_on_host() {
            Ok(())
        } else {
            Err(Error::NotOnHost {
                op,
                device: self.device().to_string(),
            })
        }
    }

    /// The device tensor, when the storage is on a GPU.
    pub fn cuda(&self) -> Option<&CudaTensor> {
        match &*self.storage {
            Storage::Cuda(t) => Some(t),
            _ => None,
        }
    }

    /// Wrap a device tensor.
    pub fn from_cuda(t: CudaTensor) -> Tensor {
        Tensor {
            shape: t.shape().to_vec(),
            storage: Arc::new(Storage::Cuda(t)),
        }
    }

    /// The device tensor for an in-place op; `None` for a host tensor.
    /// Shared storage stays shared until the op writes (the device buffer
    /// is copied on write).
    pub(crate) fn cuda_mut(&mut self) -> Option<&mut CudaTensor> {
        if !matches!(&*self.storage, Storage::Cuda(_)) {
            return None;
        }
        match Arc::make_mut(&mut self.storage) {
            Storage::Cuda(t) => Some(t),
            _ => None,
        }
    }

    /// Zeros of `shape` and `dtype` on `device` (only `f32` lives on a GPU).
    pub fn zeros_on(shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Ok(Tensor::zeros(shape, dtype)),
            Device::Cuda(d) => {
                if dtype != DType::F32 {
                    return Err(Error::CudaUnsupported {
                        op: "Tensor::zeros_on",
                        why: format!("only f32 tensors live on the GPU, got {dtype:?}"),
                    });
                }
                Ok(Tensor::from_cuda(CudaTensor::zeros(d, shape)?))
            }
        }
    }

    /// Zeros with the shape, dtype and device of `self`, or the device's error.
    pub fn try_zeros_like(&self) -> Result<Tensor> {
        match &*self.storage {
            Storage::Cuda(t) => Ok(Tensor::from_cuda(CudaTensor::zeros(
                t.device(),
                &self.shape,
            )?)),
            _ => Ok(Tensor::zeros(&self.shape, self.dtype())),
        }
    }

    /// A copy on `device` (a clone when it is already there; a new stream
    /// handle on the same GPU only rebinds the stream, no copy). Only `f32`
    /// tensors move to a GPU.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        match (&*self.storage, device) {
            (Storage::Cuda(t), Device::Cpu) => t.to_host(),
            (Storage::Cuda(t), Device::Cuda(d)) => {
                if t.device() == d {
                    Ok(Tensor::from_cuda(t.on_stream(d)?))
                } else {
                    Ok(Tensor::from_cuda(CudaTensor::from_host(&t.to_host()?, d)?))
                }
            }
            (_, Device::Cpu) => Ok(self.clone()),
            (_, Device::Cuda(d)) => Ok(Tensor::from_cuda(CudaTensor::from_host(self, d)?)),
        }
    }

    /// Bytes of storage.
    pub fn size_in_bytes(&self) -> usize {
        self.numel() * self.dtype().size()
    }

    /// The elements as a slice of `T`; fails if `T` is not the tensor's dtype.
    pub fn as_slice<T: Elem>(&self) -> Result<&[T]> {
        self.expect_host("Tensor::as_slice")?;
        get_vec::<T>(&self.storage)
            .map(|v| v.as_slice())
            .ok_or(Error::DTypeMismatch {
                op: "Tensor::as_slice",
                expected: T::DTYPE,
                got: self.dtype(),
            })
    }

    /// The elements as a mutable slice of `T`; fails if `T` is not the tensor's dtype.
    pub fn as_mut_slice<T: Elem>(&mut self) -> Result<&mut [T]> {
        self.expect_host("Tensor::as_mut_slice")?;
        let got = self.dtype();
        get_vec_mut::<T>(Arc::make_mut(&mut self.storage))
            .map(|v| v.as_mut_slice())
            .ok_or(Error::DTypeMismatch {
                op: "Tensor::as_mut_slice",
                expected: T::DTYPE,
                got,
            })
    }

    /// Consume into the underlying vector.
    pub fn into_vec<T: Elem>(self) -> Result<Vec<T>> {
        self.expect_host("Tensor::into_vec")?;
        let got = self.dtype();
        unwrap_vec::<T>(Arc::try_unwrap(self.storage).unwrap_or_else(|a| (*a).clone())).ok_or(
            Error::DTypeMismatch {
                op: "Tensor::into_vec",
                expected: T::DTYPE,
                got,
            },
        )
    }

    /// Copy the elements out as `f64` (any dtype, any device).
    ///
    /// A device tensor is copied to the host; should that copy fail, the
    /// result is `numel` NaNs (so the failure surfaces as a non-finite value,
    /// never a panic) — use [`Tensor::try_to_vec_f64`] to get the error.
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.try_to_vec_f64()
            .unwrap_or_else(|_| vec![f64::NAN; self.numel()])
    }

    /// Copy the elements out as `f64`, or the device's error.
    pub fn try_to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(match &*self.storage {
            Storage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Storage::F64(v) => v.clone(),
            Storage::Cuda(t) => t.to_vec()?.into_iter().map(|x| x as f64).collect(),
        })
    }

    /// Copy the elements out as `f32` (any dtype, any device; f64 is
    /// rounded). A failed device copy gives NaNs, as in [`Tensor::to_vec_f64`].
    pub fn to_vec_f32(&self) -> Vec<f32> {
        self.try_to_vec_f32()
            .unwrap_or_else(|_| vec![f32::NAN; self.numel()])
    }

    /// Copy the elements out as `f32`, or the device's error.
    pub fn try_to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(match &*self.storage {
            Storage::F32(v) => v.clone(),
            Storage::F64(v) => v.iter().map(|&x| x as f32).collect(),
            Storage::Cuda(t) => t.to_vec()?,
        })
    }

    /// The single element of a one-element tensor, as `f64`.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::InvalidShape {
                op: "Tensor::item",
                shape: self.shape.clone(),
                why: "item() needs exactly one element",
            });
        }
        Ok(self.try_to_vec_f64()?[0])
    }

    /// Convert to another dtype (a copy; a clone when the dtype is the same).
    /// A device tensor converted to `f64` comes back to the host (only f32
    /// lives on a GPU; a failed copy gives NaNs as in [`Tensor::to_vec_f64`]).
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if let (Storage::Cuda(_), DType::F64) = (&*self.storage, dtype) {
            return Tensor {
                shape: self.shape.clone(),
                storage: Arc::new(Storage::F64(self.to_vec_f64())),
            };
        }
        let storage = match (&*self.storage, dtype) {
            (Storage::F32(v), DType::F64) => Storage::F64(v.iter().map(|&x| x as f64).collect()),
            (Storage::F64(v), DType::F32) => Storage::F32(v.iter().map(|&x| x as f32).collect()),
            _ => return self.clone(),
        };
        Tensor {
            shape: self.shape.clone(),
            storage: Arc::new(storage),
        }
    }

    /// Same data, new shape with the same element count.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Tensor> {
        self.reshape_in_place(shape)?;
        Ok(self)
    }

    /// Change the shape without touching the data.
    pub fn reshape_in_place(&mut self, shape: &[usize]) -> Result<()> {
        let needed = numel_of(shape);
        if needed != self.numel() {
            return Err(Error::LengthMismatch {
                op: "Tensor::reshape",
                shape: shape.to_vec(),
                needed,
                len: self.numel(),
            });
        }
        if let Storage::Cuda(t) = &*self.storage {
            self.storage = Arc::new(Storage::Cuda(t.reshaped(shape)?));
        }
        self.shape = shape.to_vec();
        Ok(())
    }

    /// Make `self` a zero tensor of `shape` and `dtype`, reusing the
    /// allocation when it is large enough (workspaces call this every step).
    /// A device tensor stays on its device (a host tensor should the device
    /// allocation fail; the next op then reports the mismatch).
    pub fn resize_zeroed(&mut self, shape: &[usize], dtype: DType) {
        if !self.is_on_host() {
            let dev = self.device();
            *self = Tensor::zeros_on(shape, dtype, &dev)
                .unwrap_or_else(|_| Tensor::zeros(shape, dtype));
            return;
        }
        let n = numel_of(shape);
        let Some(storage) = Arc::get_mut(&mut self.storage) else {
            // Shared: leave the other owners their values, start afresh.
            *self = Tensor::zeros(shape, dtype);
            return;
        };
        match (storage, dtype) {
            (Storage::F32(v), DType::F32) => {
                v.clear();
                v.resize(n, 0.0);
            }
            (Storage::F64(v), DType::F64) => {
                v.clear();
                v.resize(n, 0.0);
            }
            _ => *self = Tensor::zeros(shape, dtype),
        }
        self.shape = shape.to_vec();
    }

    /// Like [`Tensor::resize_zeroed`] but leaves old values in place (callers
    /// overwrite every element): shrinking keeps the allocation and writes
    /// nothing, growing zero-fills only the new elements.
    pub(crate) fn resize_for_overwrite(&mut self, shape: &[usize], dtype: DType) {
        let n = numel_of(shape);
        let same_dtype = self.dtype() == dtype;
        match Arc::get_mut(&mut self.storage) {
            Some(Storage::F32(v)) if same_dtype => v.resize(n, 0.0),
            Some(Storage::F64(v)) if same_dtype => v.resize(n, 0.0),
            _ => return self.resize_zeroed(shape, dtype),
        }
        self.shape = shape.to_vec();
    }

    /// Set every element to `value`.
    ///
    /// On a device tensor this launches a kernel; should that fail the tensor
    /// becomes a host tensor full of `value` (the next op then reports the
    /// device mismatch) — use [`Tensor::try_fill`] to get the error.
    pub fn fill(&mut self, value: f64) {
        if !self.is_on_host() {
            if self.try_fill(value).is_err() {
                *self = Tensor::full(&self.shape.clone(), value, DType::F32);
            }
            return;
        }
        if Arc::get_mut(&mut self.storage).is_none() {
            *self = Tensor::zeros(&self.shape.clone(), self.dtype());
        }
        match Arc::make_mut(&mut self.storage) {
            Storage::F32(v) => v.iter_mut().for_each(|x| *x = value as f32),
            Storage::F64(v) => v.iter_mut().for_each(|x| *x = value),
            Storage::Cuda(_) => {}
        }
    }

    /// Set every element to `value`, or the device's error.
    pub fn try_fill(&mut self, value: f64) -> Result<()> {
        crate::ops::elementwise::fill(self, value)
    }

    /// Copy `src` into `self` (same shape and dtype), keeping `self`'s allocation.
    pub fn copy_from(&mut self, src: &Tensor) -> Result<()> {
        if self.shape != src.shape {
            return Err(Error::ShapeMismatch {
                op: "Tensor::copy_from",
                expected: self.shape.clone(),
                got: src.shape.clone(),
            });
        }
        if Arc::ptr_eq(&self.storage, &src.storage) {
            return Ok(());
        }
        if !self.is_on_host() || !src.is_on_host() {
            // Across devices (or device to device): copy on the destination's device.
            let moved = src.to_dtype(self.dtype()).to_device(&self.device())?;
            return match (Arc::make_mut(&mut self.storage), &*moved.storage) {
                (Storage::Cuda(d), Storage::Cuda(s)) => d.copy_from(s),
                _ => {
                    *self = moved;
                    Ok(())
                }
            };
        }
        match (Arc::make_mut(&mut self.storage), &*src.storage) {
            (Storage::F32(d), Storage::F32(s)) => d.copy_from_slice(s),
            (Storage::F64(d), Storage::F64(s)) => d.copy_from_slice(s),
            _ => {
                return Err(Error::DTypeMismatch {
                    op: "Tensor::copy_from",
                    expected: self.dtype(),
                    got: src.dtype(),
                })
            }
        }
        Ok(())
    }

    /// True when both tensors have the same shape, dtype and bit pattern
    /// (device tensors are compared by value after a copy to the host).
    pub fn bit_eq(&self, other: &Tensor) -> bool {
        if self.shape != other.shape {
            return false;
        }
        if !self.is_on_host() || !other.is_on_host() {
            return match (self.to_device(&Device::Cpu), other.to_device(&Device::Cpu)) {
                (Ok(a), Ok(b)) => a.bit_eq(&b),
                _ => false,
            };
        }
        match (&*self.storage, &*other.storage) {
            (Storage::F32(a), Storage::F32(b)) => {
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Storage::F64(a), Storage::F64(b)) => {
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => false,
        }
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

    /// Fail unless `self` has dtype `expected`.
    pub fn expect_dtype(&self, op: &'static str, expected: DType) -> Result<()> {
        if self.dtype() != expected {
            return Err(Error::DTypeMismatch {
                op,
                expected,
                got: self.dtype(),
            });
        }
        Ok(())
    }
}
