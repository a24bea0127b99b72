//! Every numeric kernel, as functions on [`Tensor`] values.
//!
//! CPU kernels are generic over [`Elem`](crate::Elem) (`f32` for training,
//! `f64` for gradient checks) and parallelised with rayon over work splits
//! that depend only on the shapes, never on the thread count, and every
//! reduction adds in a fixed order — so results are bit-for-bit identical
//! whatever `RAYON_NUM_THREADS` is.
//!
//! One folder per op family: `mod.rs` holds the API (docs, every shape,
//! dtype and device check, the geometry the kernels need) and dispatches
//! once to `cpu.rs` (the rayon reference) or `cuda.rs` (its CUDA twin,
//! launching the kernels of `<family>.cu` beside it); both trust the checks.
//! Every function runs where its tensor inputs live (see the `dev` helpers below). Inputs on different devices are an
//! [`Error::DeviceMismatch`]. Functions that
//! take no tensor input (`randn`, `rand_uniform`, `dropout_mask`) draw on
//! the host; [`randn_on`] draws on a given device.

pub(crate) mod batchnorm;
pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod mlp;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod random;
pub(crate) mod reduce;
pub(crate) mod rows;
pub(crate) mod shape;
pub(crate) mod softmax;

pub use batchnorm::{batch_norm_backward, batch_norm_eval, batch_norm_train, BatchNormSaved};
pub use conv::{
    col2im, conv2d_backward, conv2d_forward, im2col, scratch_pool_bytes, Conv2dGrads, ConvWorkspace,
};
pub use elementwise::{
    add, add_assign, add_bias_rows, add_scaled, axpy, bias_relu_rows, mul, mul_assign, relu,
    relu_backward, relu_backward_in_place, relu_in_place, scale, scale_in_place, sub,
};
pub use gemm::{gemm_into, matmul, Transpose};
pub use mlp::{FoldedRows, LayerAddend, MlpLayer, PackedMlp};
pub use optim::{adam_update, sgd_momentum_update, AdamHyper};
pub use pool::{max_pool2d, max_pool2d_backward, max_pool2d_forward, max_pool2d_grad, PoolIndices};
pub use random::{dropout_forward, dropout_mask, rand_uniform, rand_uniform_on, randn, randn_on};
pub use reduce::{dot, mean, sum, sum_rows, sum_sq};
pub use rows::{
    argmax_rows, combine_rows, row_coefficients, row_dots, row_max_abs, row_sums, scale_rows,
    sq_dist_scores, time_embedding, time_embedding_backward, time_frequencies,
};
pub use shape::{concat_cols, gather_rows, scatter_add_rows, split_cols, transpose2d};
pub use softmax::{log_softmax, softmax, softmax_backward, softmax_cross_entropy};

use crate::{Error, Result, Tensor};

/// Numeric traits used by the kernels when `T` is a concrete type (inside `with_dtype!`).
#[allow(unused_imports)]
pub(crate) mod num {
    pub(crate) use crate::Elem;
    pub(crate) use num_traits::{Float, FromPrimitive, One, Zero};
}

/// What the host's vector unit offers, for the kernels written for it
/// (detected once by `std`, cached).
pub(crate) mod isa {
    /// x86-64 with AVX2.
    pub(crate) fn avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// x86-64 with AVX2 and FMA.
    pub(crate) fn avx2_fma() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            avx2() && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// x86-64 with AVX-512F.
    pub(crate) fn avx512f() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// Elements per parallel task for element-wise kernels.
pub(crate) const CHUNK: usize = 1 << 14;

/// How many parallel tasks `n` items make in blocks of at most about
/// `block`: the fewest that fit, but at least two and always an even
/// number (an odd count leaves one of two cores idle for a whole block).
/// Fixed by `n` and `block` only, never by the thread count.
pub(crate) fn even_task_count(n: usize, block: usize) -> usize {
    n.div_ceil(block).max(2).next_multiple_of(2)
}

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

/// Device checks and dispatch, done once per op in its API.
///
/// An op asks where its operands live ([`dev::all`] for inputs,
/// [`dev::same_kind`] for an in-place output and its inputs); mixed host and
/// GPU operands, or operands on two GPUs, are an [`Error::DeviceMismatch`]
/// before any kernel runs. The answer is matched once: `None` runs the
/// family's `cpu.rs`, `Some(..)` its `cuda.rs` twin. Without the `cuda`
/// feature no device tensor can exist (`CudaTensor` is an empty enum), so
/// the CUDA arm is statically unreachable and needs no `cfg`.
pub(crate) mod dev {
    use crate::cuda::CudaTensor;
    use crate::{Error, Result, Tensor};

    fn mismatch(op: &'static str, ts: &[&Tensor]) -> Error {
        let devs: Vec<String> = ts.iter().map(|t| t.device().to_string()).collect();
        Error::DeviceMismatch {
            op,
            why: format!("operands on {}", devs.join(", ")),
        }
    }

    /// Fail unless every tensor of `ts` lives on the host, or every one on
    /// the same GPU; true when they are on a GPU.
    fn check(op: &'static str, ts: &[&Tensor]) -> Result<bool> {
        let first = ts[0].cuda();
        let same = ts.iter().all(|t| match (t.cuda(), first) {
            (None, None) => true,
            (Some(a), Some(b)) => a.device() == b.device(),
            _ => false,
        });
        if !same {
            return Err(mismatch(op, ts));
        }
        Ok(first.is_some())
    }

    /// The device tensors of `ts` when all live on one GPU, `None` when all
    /// are on the host, an error when they are mixed.
    pub(crate) fn all<'a, const N: usize>(
        op: &'static str,
        ts: [&'a Tensor; N],
    ) -> Result<Option<[&'a CudaTensor; N]>> {
        if !check(op, &ts)? {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(N);
        for t in ts {
            out.push(get(op, t)?);
        }
        out.try_into().map(Some).map_err(|_| mismatch(op, &ts))
    }

    /// Fail unless `y` and every tensor of `others` share a device; true
    /// when they are on a GPU.
    pub(crate) fn same_kind(op: &'static str, y: &Tensor, others: &[&Tensor]) -> Result<bool> {
        let mut ts = vec![y];
        ts.extend_from_slice(others);
        check(op, &ts)
    }

    /// The device tensor of `t`, which the caller checked is on a GPU.
    pub(crate) fn get<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a CudaTensor> {
        t.cuda().ok_or_else(|| mismatch(op, &[t]))
    }

    /// The device tensor of `t` for writing, which the caller checked is on a GPU.
    pub(crate) fn get_mut<'a>(op: &'static str, t: &'a mut Tensor) -> Result<&'a mut CudaTensor> {
        let why = format!("{} is not on a GPU", t.device());
        t.cuda_mut().ok_or(Error::DeviceMismatch { op, why })
    }

    /// Wrap a device result.
    pub(crate) fn wrap(t: CudaTensor) -> Tensor {
        Tensor::from_cuda(t)
    }
}
