//! The CUDA backend when the `cuda` feature is off: the same names as the
//! real backend, none of which can be reached.
//!
//! [`CudaDevice::new`] always fails with [`Error::CudaNotCompiled`] (so no
//! device handle exists), and [`CudaTensor`] is an empty enum: no device
//! tensor can exist, its methods are a `match` on nothing, and every CUDA
//! arm of an op's dispatch is statically unreachable. The op layer compiles the
//! same way with and without the feature (candle's `dummy_cuda_backend`).

use super::PoolStats;
use crate::{Error, Result, Tensor};

/// Whether the CUDA driver library can be loaded: never, in this build.
pub fn driver_available() -> bool {
    false
}

/// Whether cuBLAS can be loaded: never, in this build.
pub fn cublas_available() -> bool {
    false
}

/// Number of CUDA devices: [`Error::CudaNotCompiled`] in this build.
pub fn device_count() -> Result<usize> {
    Err(Error::CudaNotCompiled)
}

/// The driver's CUDA version: [`Error::CudaNotCompiled`] in this build.
pub fn driver_version() -> Result<i32> {
    Err(Error::CudaNotCompiled)
}

/// A handle to one CUDA GPU; none can be opened in this build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaDevice {
    ordinal: usize,
}

impl CudaDevice {
    /// Open CUDA device `ordinal`: always [`Error::CudaNotCompiled`] here.
    pub fn new(ordinal: usize) -> Result<Self> {
        let _ = ordinal;
        Err(Error::CudaNotCompiled)
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The GPU's name.
    pub fn name(&self) -> Result<String> {
        Err(Error::CudaNotCompiled)
    }

    /// A handle on the same GPU with a stream of its own.
    pub fn new_stream(&self) -> Result<CudaDevice> {
        Err(Error::CudaNotCompiled)
    }

    /// Wait for the work queued on this handle's stream.
    pub fn synchronize(&self) -> Result<()> {
        Err(Error::CudaNotCompiled)
    }

    /// Make this stream wait for `other`'s work so far.
    pub fn wait_for(&self, other: &CudaDevice) -> Result<()> {
        let _ = other;
        Err(Error::CudaNotCompiled)
    }

    /// The caching allocator's counters (all zero).
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }

    /// Release cached device buffers (there are none).
    pub fn empty_cache(&self) {}

    /// Compile every kernel file for this device.
    pub fn warm_up(&self) -> Result<()> {
        Err(Error::CudaNotCompiled)
    }
}

/// An `f32` tensor in device memory; none can exist in this build.
#[derive(Clone, Debug, PartialEq)]
pub enum CudaTensor {}

impl CudaTensor {
    /// Zeros on `device`.
    pub fn zeros(device: &CudaDevice, shape: &[usize]) -> Result<CudaTensor> {
        let _ = (device, shape);
        Err(Error::CudaNotCompiled)
    }

    /// Copy host `f32` values to `device`.
    pub fn from_slice(device: &CudaDevice, data: &[f32], shape: &[usize]) -> Result<CudaTensor> {
        let _ = (device, data, shape);
        Err(Error::CudaNotCompiled)
    }

    /// Copy a host tensor to `device`.
    pub fn from_host(t: &Tensor, device: &CudaDevice) -> Result<CudaTensor> {
        let _ = (t, device);
        Err(Error::CudaNotCompiled)
    }

    /// Set every element to zero.
    pub fn zero(&mut self) -> Result<()> {
        match *self {}
    }

    /// Copy the values to the host.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match *self {}
    }

    /// Copy to a host tensor.
    pub fn to_host(&self) -> Result<Tensor> {
        match *self {}
    }

    /// A copy in new device memory.
    pub fn try_clone(&self) -> Result<CudaTensor> {
        match *self {}
    }

    /// Copy `src` into `self`.
    pub fn copy_from(&mut self, src: &CudaTensor) -> Result<()> {
        let _ = src;
        match *self {}
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match *self {}
    }

    /// Size of dimension `i`.
    pub fn dim(&self, i: usize) -> usize {
        let _ = i;
        match *self {}
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        match *self {}
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        match *self {}
    }

    /// The device holding the buffer.
    pub fn device(&self) -> &CudaDevice {
        match *self {}
    }

    /// The same buffer seen from another stream handle.
    pub fn on_stream(&self, device: &CudaDevice) -> Result<CudaTensor> {
        let _ = device;
        match *self {}
    }

    /// Same data, new shape.
    pub fn reshape(self, shape: &[usize]) -> Result<CudaTensor> {
        let _ = shape;
        match self {}
    }

    /// A handle on the same data with a new shape.
    pub(crate) fn reshaped(&self, shape: &[usize]) -> Result<CudaTensor> {
        let _ = shape;
        match *self {}
    }

    /// Fail unless the shape is `expected`.
    pub fn expect_shape(&self, op: &'static str, expected: &[usize]) -> Result<()> {
        let _ = (op, expected);
        match *self {}
    }
}

impl Tensor {
    /// Copy to `device`.
    pub fn to_cuda(&self, device: &CudaDevice) -> Result<CudaTensor> {
        let _ = device;
        Err(Error::CudaNotCompiled)
    }
}

/// The op families' CUDA twins, with the signatures of `src/ops/<family>/cuda.rs`.
pub(crate) mod kernels {
    pub(crate) mod elementwise {
        use super::super::CudaTensor;
        use crate::ops::elementwise::Binary;
        use crate::Result;

        pub(crate) fn binary(a: &CudaTensor, _: &CudaTensor, _: Binary) -> Result<CudaTensor> {
            match *a {}
        }
        pub(crate) fn mul_assign(y: &mut CudaTensor, _: &CudaTensor) -> Result<()> {
            match *y {}
        }
        pub(crate) fn axpy(y: &mut CudaTensor, _: f64, _: &CudaTensor) -> Result<()> {
            match *y {}
        }
        pub(crate) fn add_scaled(
            _: f64,
            a: &CudaTensor,
            _: f64,
            _: &CudaTensor,
        ) -> Result<CudaTensor> {
            match *a {}
        }
        pub(crate) fn scale_in_place(x: &mut CudaTensor, _: f64) -> Result<()> {
            match *x {}
        }
        pub(crate) fn fill(x: &mut CudaTensor, _: f64) -> Result<()> {
            match *x {}
        }
        pub(crate) fn relu_in_place(x: &mut CudaTensor) -> Result<()> {
            match *x {}
        }
        pub(crate) fn relu_backward_in_place(dy: &mut CudaTensor, _: &CudaTensor) -> Result<()> {
            match *dy {}
        }
        pub(crate) fn bias_rows(y: &mut CudaTensor, _: &CudaTensor, _: bool) -> Result<()> {
            match *y {}
        }
    }

    pub(crate) mod gemm {
        use super::super::CudaTensor;
        use crate::ops::gemm::GemmDims;
        use crate::Result;

        pub(crate) fn matmul(a: &CudaTensor, _: &CudaTensor, _: GemmDims) -> Result<CudaTensor> {
            match *a {}
        }
        pub(crate) fn gemm_into(
            c: &mut CudaTensor,
            _: bool,
            _: &CudaTensor,
            _: &CudaTensor,
            _: GemmDims,
        ) -> Result<()> {
            match *c {}
        }
    }

    pub(crate) mod conv {
        use super::super::CudaTensor;
        use crate::ops::conv::ConvGeom;
        use crate::Result;

        /// The device buffers of a convolution workspace (none in this build).
        #[derive(Clone, Debug, Default)]
        pub(crate) struct ConvWorkspace;

        /// Gradients of a convolution on the GPU.
        pub(crate) struct Conv2dGrads {
            pub(crate) dx: Option<CudaTensor>,
            pub(crate) dw: CudaTensor,
            pub(crate) db: CudaTensor,
        }

        pub(crate) fn im2col(x: &CudaTensor, _: ConvGeom) -> Result<CudaTensor> {
            match *x {}
        }
        pub(crate) fn col2im(col: &CudaTensor, _: &[usize], _: ConvGeom) -> Result<CudaTensor> {
            match *col {}
        }
        pub(crate) fn conv2d_forward(
            x: &CudaTensor,
            _: &CudaTensor,
            _: Option<&CudaTensor>,
            _: ConvGeom,
            _: bool,
            _: &mut ConvWorkspace,
        ) -> Result<CudaTensor> {
            match *x {}
        }
        pub(crate) fn conv2d_backward(
            dy: &CudaTensor,
            _: &CudaTensor,
            _: Option<&CudaTensor>,
            _: ConvGeom,
            _: &mut ConvWorkspace,
            _: bool,
        ) -> Result<Conv2dGrads> {
            match *dy {}
        }
    }

    pub(crate) mod pool {
        use super::super::CudaTensor;
        use crate::Result;

        /// The argmax indices of a pool on the GPU (none in this build).
        #[derive(Debug)]
        pub(crate) enum Indices {}

        pub(crate) fn len(i: &Indices) -> usize {
            match *i {}
        }
        pub(crate) fn max_pool2d_forward(x: &CudaTensor) -> Result<(CudaTensor, Indices)> {
            match *x {}
        }
        pub(crate) fn max_pool2d_backward(
            dy: &CudaTensor,
            _: &Indices,
            _: &[usize],
        ) -> Result<CudaTensor> {
            match *dy {}
        }
    }

    pub(crate) mod batchnorm {
        use super::super::CudaTensor;
        use crate::ops::batchnorm::BnGeom;
        use crate::Result;

        #[allow(clippy::too_many_arguments)]
        pub(crate) fn batch_norm_train(
            x: &CudaTensor,
            _: &CudaTensor,
            _: &CudaTensor,
            _: &mut CudaTensor,
            _: &mut CudaTensor,
            _: f64,
            _: f64,
            _: BnGeom,
        ) -> Result<[CudaTensor; 5]> {
            match *x {}
        }
        pub(crate) fn batch_norm_eval(
            x: &CudaTensor,
            _: &CudaTensor,
            _: &CudaTensor,
            _: &CudaTensor,
            _: &CudaTensor,
            _: f64,
            _: BnGeom,
        ) -> Result<CudaTensor> {
            match *x {}
        }
        pub(crate) fn batch_norm_backward(
            dy: &CudaTensor,
            _: &CudaTensor,
            _: &CudaTensor,
            _: &CudaTensor,
            _: BnGeom,
        ) -> Result<[CudaTensor; 3]> {
            match *dy {}
        }
    }

    pub(crate) mod softmax {
        use super::super::CudaTensor;
        use crate::Result;

        pub(crate) fn softmax_like(x: &CudaTensor, _: bool) -> Result<CudaTensor> {
            match *x {}
        }
        pub(crate) fn softmax_backward(p: &CudaTensor, _: &CudaTensor) -> Result<CudaTensor> {
            match *p {}
        }
        pub(crate) fn softmax_cross_entropy(
            logits: &CudaTensor,
            _: &[usize],
        ) -> Result<(f64, CudaTensor)> {
            match *logits {}
        }
    }

    pub(crate) mod reduce {
        use super::super::CudaTensor;
        use crate::Result;

        pub(crate) fn sum(x: &CudaTensor) -> Result<f64> {
            match *x {}
        }
        pub(crate) fn sum_sq(x: &CudaTensor) -> Result<f64> {
            match *x {}
        }
        pub(crate) fn dot(a: &CudaTensor, _: &CudaTensor) -> Result<f64> {
            match *a {}
        }
        pub(crate) fn sum_rows(x: &CudaTensor) -> Result<CudaTensor> {
            match *x {}
        }
    }

    pub(crate) mod optim {
        use super::super::CudaTensor;
        use crate::ops::AdamHyper;
        use crate::Result;

        pub(crate) fn adam_update(
            p: &mut CudaTensor,
            _: &CudaTensor,
            _: &mut CudaTensor,
            _: &mut CudaTensor,
            _: &AdamHyper,
            _: u64,
        ) -> Result<()> {
            match *p {}
        }
        pub(crate) fn sgd_momentum_update(
            p: &mut CudaTensor,
            _: &CudaTensor,
            _: &mut CudaTensor,
            _: f64,
            _: f64,
            _: f64,
        ) -> Result<()> {
            match *p {}
        }
    }

    pub(crate) mod random {
        use super::super::{CudaDevice, CudaTensor};
        use crate::philox::RngStream;
        use crate::{Error, Result};

        pub(crate) fn randn(_: &CudaDevice, _: &[usize], _: &mut RngStream) -> Result<CudaTensor> {
            Err(Error::CudaNotCompiled)
        }
        pub(crate) fn rand_uniform(
            _: &CudaDevice,
            _: &[usize],
            _: &mut RngStream,
        ) -> Result<CudaTensor> {
            Err(Error::CudaNotCompiled)
        }
        pub(crate) fn dropout_forward(
            x: &CudaTensor,
            _: f64,
            _: &mut RngStream,
        ) -> Result<(CudaTensor, CudaTensor)> {
            match *x {}
        }
    }

    pub(crate) mod rows {
        use super::super::CudaTensor;
        use crate::Result;

        pub(crate) fn scale_rows(x: &CudaTensor, _: &CudaTensor) -> Result<CudaTensor> {
            match *x {}
        }
        pub(crate) fn combine_rows(
            alpha: &CudaTensor,
            _: &CudaTensor,
            _: &CudaTensor,
            _: &CudaTensor,
        ) -> Result<CudaTensor> {
            match *alpha {}
        }
        pub(crate) fn row_reduce(a: &CudaTensor, _: Option<&CudaTensor>) -> Result<CudaTensor> {
            match *a {}
        }
        pub(crate) fn row_max_abs(a: &CudaTensor) -> Result<CudaTensor> {
            match *a {}
        }
        pub(crate) fn argmax_rows(x: &CudaTensor) -> Result<Vec<usize>> {
            match *x {}
        }
        pub(crate) fn sq_dist_scores(
            cross: &CudaTensor,
            _: &CudaTensor,
            _: &CudaTensor,
            _: f64,
        ) -> Result<CudaTensor> {
            match *cross {}
        }
        pub(crate) fn time_embedding(t: &CudaTensor, _: usize, _: usize) -> Result<CudaTensor> {
            match *t {}
        }
        pub(crate) fn time_embedding_backward(
            t: &CudaTensor,
            _: &CudaTensor,
            _: usize,
        ) -> Result<CudaTensor> {
            match *t {}
        }
    }

    pub(crate) mod shape {
        use super::super::CudaTensor;
        use crate::{Error, Result};

        pub(crate) fn concat_cols(parts: &[&CudaTensor]) -> Result<CudaTensor> {
            let _ = parts;
            Err(Error::CudaNotCompiled)
        }
        pub(crate) fn split_cols(x: &CudaTensor, _: &[usize]) -> Result<Vec<CudaTensor>> {
            match *x {}
        }
        pub(crate) fn gather_rows(t: &CudaTensor, _: &[usize]) -> Result<CudaTensor> {
            match *t {}
        }
        pub(crate) fn scatter_add_rows(
            s: &CudaTensor,
            _: &[usize],
            _: usize,
        ) -> Result<CudaTensor> {
            match *s {}
        }
        pub(crate) fn transpose2d(x: &CudaTensor) -> Result<CudaTensor> {
            match *x {}
        }
    }
}
