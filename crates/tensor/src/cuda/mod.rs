//! The CUDA backend: devices, device memory, kernel loading and launching.
//!
//! * [`CudaDevice`]: a GPU (its primary context, compiled kernels and
//!   caching allocator, shared process-wide per ordinal) plus the stream this
//!   handle launches on. [`CudaDevice::new_stream`] gives another handle on a
//!   fresh stream: one per NoProp-DT block lets blocks train concurrently.
//! * [`CudaTensor`]: an `f32` tensor in device memory, the CUDA storage of a
//!   [`Tensor`](crate::Tensor).
//! * Kernels: one hand-written `.cu` file per op family, beside the family's
//!   CPU code (`src/ops/<family>/<family>.cu`), compiled with NVRTC at first
//!   use (`module`); GEMM runs in cuBLAS (a tiled fallback kernel is used
//!   when cuBLAS cannot be loaded).
//!
//! # One place decides whether CUDA is compiled in
//!
//! This module is the only place in the crate that looks at the `cuda`
//! feature. With it, the items above are the real backend and each op
//! family's `cuda.rs` is compiled as `kernels::<family>`. Without it, `stub`
//! provides the same names: [`CudaDevice::new`] returns
//! [`Error::CudaNotCompiled`](crate::Error::CudaNotCompiled) and
//! [`CudaTensor`] is an empty enum, so no device tensor can exist and every
//! CUDA arm of an op's `match` is statically unreachable. The op layer
//! (`src/ops/<family>/mod.rs`) therefore dispatches with one plain `match`
//! and no `cfg` (the pattern of candle's `dummy_cuda_backend`).
//!
//! cudarc loads `libcuda`, `libnvrtc` and `libcublas` at run time and panics
//! when one is missing, so [`CudaDevice::new`] probes for them first: no
//! driver, no device or no NVRTC is a typed error, never a panic.
//!
//! CUDA graphs are not used: whether they pay for the small per-block
//! kernels of NoProp needs a measurement on a GPU (see `benches/gpu/`).

mod info;
pub use info::{check_driver_version, PoolStats, MIN_DRIVER_VERSION, SYNC_ENV};

#[cfg(feature = "cuda")]
mod alloc;
#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
mod launch;
#[cfg(feature = "cuda")]
pub mod module;
#[cfg(feature = "cuda")]
mod tensor;
#[cfg(feature = "cuda")]
pub use {
    alloc::{size_class, DeviceBuffer, Pool},
    device::{cublas_available, device_count, driver_available, driver_version, CudaDevice},
    tensor::CudaTensor,
};

/// Each op family's CUDA twin, compiled from `src/ops/<family>/cuda.rs`
/// (beside the family's CPU code) as `kernels::<family>`.
#[cfg(feature = "cuda")]
#[path = "../ops"]
pub(crate) mod kernels {
    #[path = "batchnorm/cuda.rs"]
    pub(crate) mod batchnorm;
    #[path = "conv/cuda.rs"]
    pub(crate) mod conv;
    #[path = "elementwise/cuda.rs"]
    pub(crate) mod elementwise;
    #[path = "gemm/cuda.rs"]
    pub(crate) mod gemm;
    #[path = "optim/cuda.rs"]
    pub(crate) mod optim;
    #[path = "pool/cuda.rs"]
    pub(crate) mod pool;
    #[path = "random/cuda.rs"]
    pub(crate) mod random;
    #[path = "reduce/cuda.rs"]
    pub(crate) mod reduce;
    #[path = "rows/cuda.rs"]
    pub(crate) mod rows;
    #[path = "shape/cuda.rs"]
    pub(crate) mod shape;
    #[path = "softmax/cuda.rs"]
    pub(crate) mod softmax;
}

/// What a family's `cuda.rs` needs, in one import.
#[cfg(feature = "cuda")]
pub(crate) mod prelude {
    pub(crate) use super::launch::{cfg_1d, cfg_rows, launch, u32_of, upload_u32, BLOCK};
    pub(crate) use super::tensor::{fits_u32, numel_of};
    pub(crate) use super::{CudaDevice, CudaTensor, DeviceBuffer};
    pub(crate) use crate::{Error, Result};
    pub(crate) use cudarc::driver::{LaunchConfig, PushKernelArg};
}

#[cfg(not(feature = "cuda"))]
mod stub;
#[cfg(not(feature = "cuda"))]
pub(crate) use stub::kernels;
#[cfg(not(feature = "cuda"))]
pub use stub::{
    cublas_available, device_count, driver_available, driver_version, CudaDevice, CudaTensor,
};
