//! Every numeric kernel, as functions on [`Tensor`] values.
//!
//! CPU kernels are generic over [`Elem`](crate::Elem) (`f32` for training,
//! `f64` for gradient checks) and parallelised with rayon over work splits
//! that depend only on the shapes, never on the thread count, and every
//! reduction adds in a fixed order — so results are bit-for-bit identical
//! whatever `RAYON_NUM_THREADS` is.

mod batchnorm;
mod conv;
mod elementwise;
mod gemm;
mod optim;
mod pool;
pub(crate) mod random;
mod reduce;
mod shape;
mod softmax;

pub use batchnorm::{batch_norm_backward, batch_norm_eval, batch_norm_train, BatchNormSaved};
pub use conv::{col2im, conv2d_backward, conv2d_forward, im2col, Conv2dGrads, ConvWorkspace};
pub use elementwise::{
    add, add_assign, add_bias_rows, add_scaled, axpy, bias_relu_rows, mul, mul_assign, relu,
    relu_backward, relu_backward_in_place, relu_in_place, scale, scale_in_place, sub,
};
pub use gemm::{gemm_into, matmul, Transpose};
pub use optim::{adam_update, sgd_momentum_update, AdamHyper};
pub use pool::{max_pool2d_backward, max_pool2d_forward};
pub use random::{dropout_forward, dropout_mask, rand_uniform, randn};
pub use reduce::{dot, mean, sum, sum_rows, sum_sq};
pub use shape::{concat_cols, gather_rows, scatter_add_rows, split_cols, transpose2d};
pub use softmax::{log_softmax, softmax, softmax_backward, softmax_cross_entropy};

use crate::{Error, Result, Tensor};

/// Numeric traits used by the kernels when `T` is a concrete type (inside `with_dtype!`).
#[allow(unused_imports)]
pub(crate) mod num {
    pub(crate) use crate::Elem;
    pub(crate) use num_traits::{Float, FromPrimitive, One, Zero};
}

/// Elements per parallel task for element-wise kernels.
pub(crate) const CHUNK: usize = 1 << 14;

pub(crate) fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::ShapeMismatch {
            op,
            expected: a.shape().to_vec(),
            got: b.shape().to_vec(),
        });
    }
    a.expect_dtype(op, b.dtype())?;
    // The dtype check above is symmetric once it passes.
    Ok(())
}

pub(crate) fn rank(op: &'static str, t: &Tensor, r: usize) -> Result<()> {
    if t.rank() != r {
        return Err(Error::InvalidShape {
            op,
            shape: t.shape().to_vec(),
            why: match r {
                1 => "expected a 1-D tensor",
                2 => "expected a 2-D tensor",
                4 => "expected a 4-D NCHW tensor",
                _ => "wrong rank",
            },
        });
    }
    Ok(())
}
