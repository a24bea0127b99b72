//! # noprop-tensor
//!
//! Tensors, devices and every numeric kernel that noprop-rs trains with.
//!
//! * [`Tensor`]: `f32` (training) or `f64` (gradient checks), contiguous,
//!   row-major, NCHW for images, owning its storage on one [`Device`].
//! * [`ops`]: GEMM with transposes, conv2d (im2col + GEMM) forward and
//!   backward, 2×2 max-pooling with indices, batch-norm, softmax and fused
//!   cross-entropy, reductions, axpy-style updates, fused Adam/AdamW and SGD,
//!   dropout masks and random tensors.
//! * [`philox`]: the counter-based Philox 4x32-10 generator, keyed by
//!   `(seed, stream, offset)`, so no draw depends on thread scheduling.
//!
//! * [`cuda`]: the CUDA backend (feature `cuda`) — hand-written kernels
//!   compiled with NVRTC at first use, cuBLAS GEMM, a caching allocator; one
//!   CUDA twin of every op in [`ops`]. Without the feature a stub with the
//!   same names, whose device constructor returns a typed error.
//!
//! CPU kernels run on rayon with work splits fixed by the shapes, so results
//! are bit-for-bit identical for any `RAYON_NUM_THREADS`.
//!
//! ```
//! use noprop_tensor::{ops, ops::Transpose, DType, Tensor};
//! let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let b = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], &[2, 2])?;
//! let c = ops::matmul(&a, Transpose::Yes, &b, Transpose::No)?; // aᵀ·I
//! assert_eq!(c.as_slice::<f32>()?, &[1.0, 3.0, 2.0, 4.0]);
//! assert_eq!(c.to_dtype(DType::F64).dtype(), DType::F64);
//! # Ok::<(), noprop_tensor::Error>(())
//! ```
#![deny(missing_docs)]

pub mod cuda;
mod device;
mod dtype;
mod error;
pub mod ops;
pub mod philox;
mod storage;
mod tensor;

pub use device::{CudaDevice, Device};
pub use dtype::{DType, Elem};
pub use error::{Error, Result};
pub use tensor::Tensor;

/// Keep freed heap memory for reuse instead of returning it to the OS.
///
/// A training step frees and re-allocates the same large buffers every
/// mini-batch; with glibc's defaults each becomes a fresh `mmap` whose pages
/// the kernel must fault in and zero (≈15% of a CPU epoch in a profile).
/// This keeps allocations up to 32 MiB (glibc's largest threshold) on the
/// heap and never trims it. Call it once at the start of a binary, before
/// other threads exist; a no-op off glibc. It only tunes glibc's `malloc`:
/// the `noprop` binary uses mimalloc instead, which does this better (larger
/// activations, and the heaps of other threads; docs/PERFORMANCE.md).
pub fn tune_host_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
