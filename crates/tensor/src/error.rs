//! The error type of `noprop-tensor`.

use crate::DType;

/// Everything that can go wrong in a tensor operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two shapes that must agree do not.
    #[error("shape mismatch in {op}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// The operation that checked the shapes.
        op: &'static str,
        /// The shape it needed.
        expected: Vec<usize>,
        /// The shape it was given.
        got: Vec<usize>,
    },
    /// A shape is not valid for an operation (wrong rank, too small, ...).
    #[error("invalid shape for {op}: {shape:?} ({why})")]
    InvalidShape {
        /// The operation.
        op: &'static str,
        /// The offending shape.
        shape: Vec<usize>,
        /// Why it is invalid.
        why: &'static str,
    },
    /// The element count of a buffer does not match the shape it should fill.
    #[error("{op}: buffer holds {len} elements but shape {shape:?} needs {needed}")]
    LengthMismatch {
        /// The operation.
        op: &'static str,
        /// The shape requested.
        shape: Vec<usize>,
        /// Elements needed by the shape.
        needed: usize,
        /// Elements in the buffer.
        len: usize,
    },
    /// Operands of one operation have different element types.
    #[error("dtype mismatch in {op}: expected {expected:?}, got {got:?}")]
    DTypeMismatch {
        /// The operation.
        op: &'static str,
        /// The dtype it needed.
        expected: DType,
        /// The dtype it was given.
        got: DType,
    },
    /// A class label is outside `0..classes`.
    #[error("{op}: label {label} at row {row} is not below the class count {classes}")]
    LabelOutOfRange {
        /// The operation.
        op: &'static str,
        /// Row of the batch.
        row: usize,
        /// The label found.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// An argument is outside its legal range.
    #[error("invalid argument to {op}: {why}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Operands of one operation live on different devices (move them with
    /// [`Tensor::to_device`](crate::Tensor::to_device) first).
    #[error("device mismatch in {op}: {why}")]
    DeviceMismatch {
        /// The operation.
        op: &'static str,
        /// Which devices were found.
        why: String,
    },
    /// A host-only accessor (`as_slice`, views, `into_vec`, …) was called on a
    /// tensor in device memory; copy it with `to_device(&Device::Cpu)` first.
    #[error("{op} needs a host tensor, but this one lives on {device}")]
    NotOnHost {
        /// The accessor.
        op: &'static str,
        /// The device holding the tensor.
        device: String,
    },
    /// The crate was built without the `cuda` feature.
    #[error("CUDA support was not compiled in: rebuild with `--features cuda`")]
    CudaNotCompiled,
    /// A CUDA library (the driver `libcuda`, NVRTC or cuBLAS) could not be loaded.
    #[error("CUDA library `{lib}` could not be loaded: {why}")]
    CudaLibraryMissing {
        /// The library's short name (`cuda`, `nvrtc`, `cublas`).
        lib: &'static str,
        /// What to install or where it was looked for.
        why: String,
    },
    /// The driver loaded but the requested device does not exist.
    #[error("no CUDA device {ordinal}: the driver reports {count} device(s)")]
    CudaNoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// Devices the driver sees.
        count: usize,
    },
    /// A CUDA driver or cuBLAS call failed.
    #[error("CUDA error in {op}: {why}")]
    Cuda {
        /// The operation that called CUDA.
        op: &'static str,
        /// The driver's message.
        why: String,
    },
    /// NVRTC rejected a kernel source.
    #[error("NVRTC could not compile {file}: {log}")]
    NvrtcCompile {
        /// The `.cu` file.
        file: &'static str,
        /// The compiler log (or the NVRTC error when there is no log).
        log: String,
    },
    /// A kernel launch failed.
    #[error("CUDA kernel `{kernel}` failed to launch: {why}")]
    CudaLaunch {
        /// The kernel's name.
        kernel: &'static str,
        /// The driver's message.
        why: String,
    },
    /// The CUDA backend does not implement this operation or dtype.
    #[error("{op} is not supported on CUDA: {why}")]
    CudaUnsupported {
        /// The operation.
        op: &'static str,
        /// Why (e.g. only f32 lives on the GPU).
        why: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
