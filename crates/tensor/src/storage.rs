//! What a [`Tensor`](crate::Tensor) owns: host vectors of `f32` or `f64`, or
//! device memory, and the typed views of the host vectors.
//!
//! The views are sound because [`Elem`] is sealed: it is implemented for
//! `f32` and `f64` only, each naming its own `DTYPE`, so `T::DTYPE == F32`
//! means `T` is `f32`.

use crate::cuda::CudaTensor;
use crate::{DType, Elem};

/// The storage of a tensor: host vectors, or an `f32` buffer in device
/// memory (without the `cuda` feature `CudaTensor` is an empty enum, so the
/// last variant cannot be built).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Device memory; its shape is kept equal to the tensor's.
    Cuda(CudaTensor),
}

pub(crate) fn wrap_vec<T: Elem>(v: Vec<T>) -> Storage {
    // `Elem` is implemented for f32 and f64 only; dispatch by dtype.
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    match T::DTYPE {
        // SAFETY: T::DTYPE == F32 means T is f32 (Elem is only implemented for
        // f32 and f64, and each names its own DTYPE), so the raw parts form a
        // valid Vec<f32>.
        DType::F32 => Storage::F32(unsafe { Vec::from_raw_parts(ptr as *mut f32, len, cap) }),
        // SAFETY: as above, T is f64.
        DType::F64 => Storage::F64(unsafe { Vec::from_raw_parts(ptr as *mut f64, len, cap) }),
    }
}

pub(crate) fn get_vec<T: Elem>(s: &Storage) -> Option<&Vec<T>> {
    match (s, T::DTYPE) {
        // SAFETY: T is f32 exactly when T::DTYPE == F32 (see `wrap_vec`).
        (Storage::F32(v), DType::F32) => Some(unsafe { &*(v as *const Vec<f32> as *const Vec<T>) }),
        // SAFETY: T is f64.
        (Storage::F64(v), DType::F64) => Some(unsafe { &*(v as *const Vec<f64> as *const Vec<T>) }),
        _ => None,
    }
}

pub(crate) fn get_vec_mut<T: Elem>(s: &mut Storage) -> Option<&mut Vec<T>> {
    match (s, T::DTYPE) {
        // SAFETY: T is f32 exactly when T::DTYPE == F32 (see `wrap_vec`).
        (Storage::F32(v), DType::F32) => Some(unsafe { &mut *(v as *mut Vec<f32> as *mut Vec<T>) }),
        // SAFETY: T is f64.
        (Storage::F64(v), DType::F64) => Some(unsafe { &mut *(v as *mut Vec<f64> as *mut Vec<T>) }),
        _ => None,
    }
}

pub(crate) fn unwrap_vec<T: Elem>(s: Storage) -> Option<Vec<T>> {
    match (s, T::DTYPE) {
        (Storage::F32(v), DType::F32) => {
            let mut v = std::mem::ManuallyDrop::new(v);
            // SAFETY: T is f32.
            Some(unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut T, v.len(), v.capacity()) })
        }
        (Storage::F64(v), DType::F64) => {
            let mut v = std::mem::ManuallyDrop::new(v);
            // SAFETY: T is f64.
            Some(unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut T, v.len(), v.capacity()) })
        }
        _ => None,
    }
}
