//! Training through many evaluations of the network on one mini-batch with
//! the image path run once (docs/DECISIONS.md § 17 applied to training, as the adjoint
//! baseline needs): [`CtNet::image_train`] runs the image path in training
//! mode, [`CtNet::step_forward`] / [`CtNet::step_backward`] evaluate the
//! label, time and fusion layers at one `(z, t)` and back-propagate through
//! them, accumulating what the image path's gradient needs, and
//! [`CtNet::finish_image`] back-propagates that sum through the conv path
//! once.
//!
//! With `P = f(x)·W1_xᵀ` (the image block of the first fusion layer),
//! `h1 = ReLU(P + f(z)·W1_zᵀ + f(t)·W1_tᵀ + b1)`; since `P` enters every
//! evaluation additively, `∂L/∂W1_x = (Σ_k ∂L/∂P_k)ᵀ·f(x)` and
//! `∂L/∂f(x) = (Σ_k ∂L/∂P_k)·W1_x`: one GEMM pair and one conv backward per
//! mini-batch whatever the number of evaluations.

use noprop_nn::{Mode, Module};
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::Tensor;

use super::{CtNet, ImageCache, LabelPath};
use crate::{Error, Result};

/// What one training-mode evaluation leaves for its backward pass.
#[derive(Clone, Debug)]
struct StepCache {
    fz: Tensor,
    ft: Tensor,
    h1: Tensor,
}

/// The image path of one training mini-batch and the gradient sums of the
/// evaluations made on it (see the module documentation).
#[derive(Clone, Debug)]
pub struct TrainImageCache {
    fx: Tensor,
    cache: ImageCache,
    dproj: Tensor,
    dw_label: Tensor,
    dw_time: Tensor,
    db1: Tensor,
    step: Option<StepCache>,
}

impl TrainImageCache {
    /// The evaluation-mode cache of the same image features (for
    /// [`CtNet::forward_cached`], which computes the same numbers as
    /// [`CtNet::step_forward`] without keeping anything for a backward pass).
    pub fn eval_cache(&self) -> &ImageCache {
        &self.cache
    }
}

impl CtNet {
    /// Run the image path on `x` in training mode (dropout keyed by the last
    /// [`CtNet::set_rng_key`]) and keep its features for the evaluations of
    /// this mini-batch. Only the FC label path is supported (the prototype
    /// label path has dropout of its own at every evaluation).
    pub fn image_train(&mut self, x: &Tensor) -> Result<TrainImageCache> {
        if matches!(self.label, LabelPath::Conv(..)) {
            return Err(Error::Config {
                what: "cached training evaluations need the FC label path (not prototype)".into(),
            });
        }
        let fx = self.img.forward(x, Mode::Train)?;
        let w = ops::split_cols(&self.fc1.weight, &[256, 256, 256])?;
        let proj = ops::matmul(&fx, Transpose::No, &w[0], Transpose::Yes)?;
        let dw = || Tensor::zeros_on(&[256, 256], fx.dtype(), &fx.device());
        Ok(TrainImageCache {
            dproj: proj.zeros_like(),
            dw_label: dw()?,
            dw_time: dw()?,
            db1: self.fc1.bias.zeros_like(),
            cache: ImageCache {
                proj,
                w_label: w[1].clone(),
                w_time: w[2].clone(),
            },
            fx,
            step: None,
        })
    }

    /// Logits at `(z, t)` on the cached image path, in training mode: the
    /// same numbers as [`CtNet::forward_cached`], with what
    /// [`CtNet::step_backward`] needs kept (one evaluation at a time).
    pub fn step_forward(&mut self, c: &mut TrainImageCache, z: &Tensor, t: f64) -> Result<Tensor> {
        let fz = self.label_forward(z, Mode::Train)?;
        let ft = self.time_features(&[t], Mode::Train, z)?;
        let mut tb = ops::matmul(&ft, Transpose::No, &c.cache.w_time, Transpose::Yes)?;
        ops::add_bias_rows(&mut tb, &self.fc1.bias)?;
        let tb = tb.reshape(&[256])?;
        let mut h1 = c.cache.proj.clone();
        ops::gemm_into(
            &mut h1,
            true,
            &fz,
            Transpose::No,
            &c.cache.w_label,
            Transpose::Yes,
        )?;
        ops::bias_relu_rows(&mut h1, &tb)?;
        let h2 = self.fc2.forward(&h1, Mode::Train)?;
        let logits = self.fc3.forward(&h2, Mode::Train)?;
        c.step = Some(StepCache { fz, ft, h1 });
        Ok(logits)
    }

    /// Backward from `∂L/∂logits` of the last [`CtNet::step_forward`]: adds
    /// the gradients of the label, time and fusion layers, accumulates the
    /// image-path terms in `c`, and returns `∂L/∂z`.
    pub fn step_backward(&mut self, c: &mut TrainImageCache, dlogits: &Tensor) -> Result<Tensor> {
        let s = c.step.take().ok_or_else(|| Error::Config {
            what: "step_backward needs a step_forward first".into(),
        })?;
        let d2 = self.fc3.backward(dlogits)?;
        let dh1 = self.fc2.backward(&d2)?;
        let dpre = ops::relu_backward(&dh1, &s.h1)?;
        ops::add_assign(&mut c.dproj, &dpre)?;
        ops::gemm_into(
            &mut c.dw_label,
            true,
            &dpre,
            Transpose::Yes,
            &s.fz,
            Transpose::No,
        )?;
        // The time features are one row shared by the batch.
        let drow = ops::sum_rows(&dpre)?.reshape(&[1, 256])?;
        ops::gemm_into(
            &mut c.dw_time,
            true,
            &drow,
            Transpose::Yes,
            &s.ft,
            Transpose::No,
        )?;
        ops::add_assign(&mut c.db1, &drow.clone().reshape(&[256])?)?;
        let dft = ops::matmul(&drow, Transpose::No, &c.cache.w_time, Transpose::No)?;
        self.time_fc.backward(&dft)?;
        let dfz = ops::matmul(&dpre, Transpose::No, &c.cache.w_label, Transpose::No)?;
        match &mut self.label {
            LabelPath::Fc(fc) => Ok(fc.backward(&dfz)?),
            LabelPath::Conv(..) => Err(Error::Config {
                what: "cached training evaluations need the FC label path".into(),
            }),
        }
    }

    /// Fold the sums of every evaluation into the first fusion layer's
    /// gradient and back-propagate `Σ_k ∂L/∂f(x)` through the image path once.
    pub fn finish_image(&mut self, c: TrainImageCache) -> Result<()> {
        let dw_img = ops::matmul(&c.dproj, Transpose::Yes, &c.fx, Transpose::No)?;
        let dw = ops::concat_cols(&[&dw_img, &c.dw_label, &c.dw_time])?;
        {
            let mut p = self.fc1.params();
            ops::add_assign(p[0].grad, &dw)?;
            ops::add_assign(p[1].grad, &c.db1)?;
        }
        let w_img = ops::split_cols(&self.fc1.weight, &[256, 256, 256])?;
        let dfx = ops::matmul(&c.dproj, Transpose::No, &w_img[0], Transpose::No)?;
        self.img.backward(&dfx)?;
        Ok(())
    }
}
