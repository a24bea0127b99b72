//! Element types.
//!
//! Models train in `f32`. `f64` exists on the CPU so that every layer's
//! backward pass can be checked against central finite differences with
//! enough precision (relative error < 1e-6): the very same generic kernels run
//! with `T = f64`.

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float: the training type.
    F32,
    /// 64-bit IEEE float: for gradient checks and references.
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

mod sealed {
    /// Implemented for `f32` and `f64` only: see [`super::Elem`].
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A float type the CPU kernels are generic over (`f32` or `f64`).
///
/// Sealed: the kernels reinterpret storage by [`Elem::DTYPE`], so an
/// implementation outside this crate with a wrong `DTYPE` would read memory
/// as the wrong type from safe code. `Elem` requires a private supertrait
/// that only `f32` and `f64` implement; downstream code cannot name it:
///
/// ```compile_fail,E0603
/// struct Half;
/// impl noprop_tensor::dtype::sealed::Sealed for Half {}
/// ```
pub trait Elem:
    sealed::Sealed
    + num_traits::Float
    + num_traits::FromPrimitive
    + Default
    + Debug
    + Send
    + Sync
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + 'static
{
    /// The matching [`DType`].
    const DTYPE: DType;
    /// Lossy conversion from `f64`.
    fn from_f64_lossy(x: f64) -> Self;
    /// Widening conversion to `f64`.
    fn to_f64_lossless(self) -> f64;
}

impl Elem for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn from_f64_lossy(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
}

impl Elem for f64 {
    const DTYPE: DType = DType::F64;
    #[inline(always)]
    fn from_f64_lossy(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64_lossless(self) -> f64 {
        self
    }
}

/// Run `$body` with the type alias `$T` bound to the Rust type of `$dtype`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_dtype {
    ($dtype:expr, $T:ident, $body:block) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
        }
    };
}
