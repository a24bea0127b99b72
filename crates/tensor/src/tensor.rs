//! The [`Tensor`] type: a contiguous, row-major array of `f32` or `f64` on one device.

use std::sync::Arc;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Dimension, IxDyn};

use crate::{DType, Device, Elem, Error, Result};

/// Host storage of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// A dense tensor: contiguous, row-major (NCHW for images), owning its storage.
///
/// The storage is reference-counted and copied on write: `clone` is O(1) (a
/// layer caching its input for backward costs nothing), and the first
/// mutation of a shared tensor copies it, so values never alias.
///
/// Layers and models only ever call tensor operations (the [`ops`](crate::ops)
/// module and the methods here), never the storage directly, so a device
/// backend can be swapped in underneath.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<CpuStorage>,
}

fn numel_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        let n = numel_of(shape);
        let storage = match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F64 => CpuStorage::F64(vec![0.0; n]),
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

    /// Zeros with the shape and dtype of `self`.
    pub fn zeros_like(&self) -> Tensor {
        Tensor::zeros(&self.shape, self.dtype())
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
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match &*self.storage {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }

    /// The device holding the storage.
    pub fn device(&self) -> Device {
        Device::Cpu
    }

    /// Bytes of storage.
    pub fn size_in_bytes(&self) -> usize {
        self.numel() * self.dtype().size()
    }

    /// The elements as a slice of `T`; fails if `T` is not the tensor's dtype.
    pub fn as_slice<T: Elem>(&self) -> Result<&[T]> {
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
        let got = self.dtype();
        unwrap_vec::<T>(Arc::try_unwrap(self.storage).unwrap_or_else(|a| (*a).clone())).ok_or(
            Error::DTypeMismatch {
                op: "Tensor::into_vec",
                expected: T::DTYPE,
                got,
            },
        )
    }

    /// Copy the elements out as `f64` (any dtype).
    pub fn to_vec_f64(&self) -> Vec<f64> {
        match &*self.storage {
            CpuStorage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(v) => v.clone(),
        }
    }

    /// Copy the elements out as `f32` (any dtype; f64 is rounded).
    pub fn to_vec_f32(&self) -> Vec<f32> {
        match &*self.storage {
            CpuStorage::F32(v) => v.clone(),
            CpuStorage::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
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
        Ok(self.to_vec_f64()[0])
    }

    /// Convert to another dtype (a copy; a clone when the dtype is the same).
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        let storage = match (&*self.storage, dtype) {
            (CpuStorage::F32(v), DType::F64) => {
                CpuStorage::F64(v.iter().map(|&x| x as f64).collect())
            }
            (CpuStorage::F64(v), DType::F32) => {
                CpuStorage::F32(v.iter().map(|&x| x as f32).collect())
            }
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
        self.shape = shape.to_vec();
        Ok(())
    }

    /// Make `self` a zero tensor of `shape` and `dtype`, reusing the
    /// allocation when it is large enough (workspaces call this every step).
    pub fn resize_zeroed(&mut self, shape: &[usize], dtype: DType) {
        let n = numel_of(shape);
        let Some(storage) = Arc::get_mut(&mut self.storage) else {
            // Shared: leave the other owners their values, start afresh.
            *self = Tensor::zeros(shape, dtype);
            return;
        };
        match (storage, dtype) {
            (CpuStorage::F32(v), DType::F32) => {
                v.clear();
                v.resize(n, 0.0);
            }
            (CpuStorage::F64(v), DType::F64) => {
                v.clear();
                v.resize(n, 0.0);
            }
            _ => *self = Tensor::zeros(shape, dtype),
        }
        self.shape = shape.to_vec();
    }

    /// Like [`Tensor::resize_zeroed`] but leaves old values in place (callers
    /// overwrite every element).
    pub(crate) fn resize_for_overwrite(&mut self, shape: &[usize], dtype: DType) {
        let n = numel_of(shape);
        if self.dtype() == dtype && self.numel() == n && Arc::get_mut(&mut self.storage).is_some() {
            self.shape = shape.to_vec();
        } else {
            self.resize_zeroed(shape, dtype);
        }
    }

    /// Set every element to `value`.
    pub fn fill(&mut self, value: f64) {
        if Arc::get_mut(&mut self.storage).is_none() {
            *self = Tensor::zeros(&self.shape.clone(), self.dtype());
        }
        match Arc::make_mut(&mut self.storage) {
            CpuStorage::F32(v) => v.iter_mut().for_each(|x| *x = value as f32),
            CpuStorage::F64(v) => v.iter_mut().for_each(|x| *x = value),
        }
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
        match (Arc::make_mut(&mut self.storage), &*src.storage) {
            (CpuStorage::F32(d), CpuStorage::F32(s)) => d.copy_from_slice(s),
            (CpuStorage::F64(d), CpuStorage::F64(s)) => d.copy_from_slice(s),
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

    /// True when both tensors have the same shape, dtype and bit pattern.
    pub fn bit_eq(&self, other: &Tensor) -> bool {
        if self.shape != other.shape {
            return false;
        }
        match (&*self.storage, &*other.storage) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
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

fn wrap_vec<T: Elem>(v: Vec<T>) -> CpuStorage {
    // `Elem` is implemented for f32 and f64 only; dispatch by dtype.
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    match T::DTYPE {
        // SAFETY: T::DTYPE == F32 means T is f32 (Elem is only implemented for
        // f32 and f64, and each names its own DTYPE), so the raw parts form a
        // valid Vec<f32>.
        DType::F32 => CpuStorage::F32(unsafe { Vec::from_raw_parts(ptr as *mut f32, len, cap) }),
        // SAFETY: as above, T is f64.
        DType::F64 => CpuStorage::F64(unsafe { Vec::from_raw_parts(ptr as *mut f64, len, cap) }),
    }
}

fn get_vec<T: Elem>(s: &CpuStorage) -> Option<&Vec<T>> {
    match (s, T::DTYPE) {
        // SAFETY: T is f32 exactly when T::DTYPE == F32 (see `wrap_vec`).
        (CpuStorage::F32(v), DType::F32) => {
            Some(unsafe { &*(v as *const Vec<f32> as *const Vec<T>) })
        }
        // SAFETY: T is f64.
        (CpuStorage::F64(v), DType::F64) => {
            Some(unsafe { &*(v as *const Vec<f64> as *const Vec<T>) })
        }
        _ => None,
    }
}

fn get_vec_mut<T: Elem>(s: &mut CpuStorage) -> Option<&mut Vec<T>> {
    match (s, T::DTYPE) {
        // SAFETY: T is f32 exactly when T::DTYPE == F32 (see `wrap_vec`).
        (CpuStorage::F32(v), DType::F32) => {
            Some(unsafe { &mut *(v as *mut Vec<f32> as *mut Vec<T>) })
        }
        // SAFETY: T is f64.
        (CpuStorage::F64(v), DType::F64) => {
            Some(unsafe { &mut *(v as *mut Vec<f64> as *mut Vec<T>) })
        }
        _ => None,
    }
}

fn unwrap_vec<T: Elem>(s: CpuStorage) -> Option<Vec<T>> {
    match (s, T::DTYPE) {
        (CpuStorage::F32(v), DType::F32) => {
            let mut v = std::mem::ManuallyDrop::new(v);
            // SAFETY: T is f32.
            Some(unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut T, v.len(), v.capacity()) })
        }
        (CpuStorage::F64(v), DType::F64) => {
            let mut v = std::mem::ManuallyDrop::new(v);
            // SAFETY: T is f64.
            Some(unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut T, v.len(), v.capacity()) })
        }
        _ => None,
    }
}
