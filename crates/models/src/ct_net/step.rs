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

use super::{row_halves, stack_row_halves, CtNet, FrozenHead, ImageCache, LabelPath};
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
    /// What the row halves need where the batch is split ([`row_halves`]).
    split: Option<Split>,
}

/// The row halves of one mini-batch: `proj`'s two halves, and frozen
/// copies of the label, `W1_z`, fc2 and fc3 weights as they were at
/// [`CtNet::image_train`] (a cache belongs to one mini-batch, whose
/// evaluations all see the same weights; the update comes after
/// [`CtNet::finish_image`]).
#[derive(Clone, Debug)]
struct Split {
    proj: [Tensor; 2],
    head: FrozenHead,
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
        let rows = |r: std::ops::Range<usize>| ops::gather_rows(&proj, &r.collect::<Vec<_>>());
        let split = match (row_halves(proj.dim(0), &proj.device()), &self.label) {
            (Some([lo, hi]), LabelPath::Fc(fc)) => Some(Split {
                proj: [rows(lo)?, rows(hi)?],
                head: self.frozen_head(Some(fc.frozen()?))?,
            }),
            _ => None,
        };
        Ok(TrainImageCache {
            split,
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
    ///
    /// Where [`row_halves`] splits the batch, the two row halves run
    /// side by side, each through every layer on its own core: the rows
    /// are independent, and one batch-wide evaluation is 8–10 small
    /// kernels that each made the cores wait for one another. The `gemm`
    /// crate picks its kernels by the number of rows, so the halves can
    /// differ from the whole batch in the last bits (the split depends on
    /// the batch size only, so runs stay reproducible whatever the thread
    /// count; `split_step_forward_matches_the_whole_batch` bounds it).
    pub fn step_forward(&mut self, c: &mut TrainImageCache, z: &Tensor, t: f64) -> Result<Tensor> {
        let ft = self.time_features(&[t], Mode::Train, z)?;
        let mut tb = ops::matmul(&ft, Transpose::No, &c.cache.w_time, Transpose::Yes)?;
        ops::add_bias_rows(&mut tb, &self.fc1.bias)?;
        let tb = tb.reshape(&[256])?;
        // `split` is set exactly where the batch is split ([`row_halves`]).
        let Some(split) = c.split.as_ref() else {
            return self.step_forward_whole(c, z, ft, &tb);
        };
        let (halves, frozen) = (&split.proj, &split.head);
        let label = frozen.label().ok_or_else(|| Error::Config {
            what: "cached training evaluations need the FC label path (not prototype)".into(),
        })?;
        let [lo, hi] = [0..halves[0].dim(0), halves[0].dim(0)..z.dim(0)];
        // One half: its rows of z through the label path and the fusion head.
        let run = |rows: std::ops::Range<usize>, proj: &Tensor| -> Result<[Tensor; 4]> {
            let zr = ops::gather_rows(z, &rows.collect::<Vec<_>>())?;
            let fz = label.apply(&zr)?;
            let [h1, h2, logits] = frozen.fusion(proj, &fz, &tb)?;
            Ok([fz, h1, h2, logits])
        };
        let (lo, hi) = rayon::join(|| run(lo, &halves[0]), || run(hi, &halves[1]));
        let ([fz_a, h1_a, h2_a, lg_a], [fz_b, h1_b, h2_b, lg_b]) = (lo?, hi?);
        let fz = stack_row_halves(&fz_a, &fz_b)?;
        let h1 = stack_row_halves(&h1_a, &h1_b)?;
        let h2 = stack_row_halves(&h2_a, &h2_b)?;
        let logits = stack_row_halves(&lg_a, &lg_b)?;
        if let LabelPath::Fc(label) = &mut self.label {
            label.keep_for_backward(z.clone(), &fz);
        }
        self.fc2.keep_for_backward(h1.clone(), &h2);
        self.fc3.keep_for_backward(h2, &logits);
        c.step = Some(StepCache { fz, ft, h1 });
        Ok(logits)
    }

    /// [`CtNet::step_forward`] on the whole batch at once.
    fn step_forward_whole(
        &mut self,
        c: &mut TrainImageCache,
        z: &Tensor,
        ft: Tensor,
        tb: &Tensor,
    ) -> Result<Tensor> {
        let fz = self.label_forward(z, Mode::Train)?;
        let mut h1 = c.cache.proj.clone();
        ops::gemm_into(
            &mut h1,
            true,
            &fz,
            Transpose::No,
            &c.cache.w_label,
            Transpose::Yes,
        )?;
        ops::bias_relu_rows(&mut h1, tb)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::ConvStack;
    use noprop_tensor::philox::RngStream;
    use noprop_tensor::DType;

    /// One forward/backward evaluation of `net` at `(z, t)` on `x`, with
    /// the row halves side by side (`split`) or the whole batch at once:
    /// the logits, `∂L/∂z` and every gradient after `finish_image`.
    fn evaluate(net: &mut CtNet, x: &Tensor, z: &Tensor, split: bool) -> Vec<Tensor> {
        net.zero_grad();
        net.set_rng_key(5);
        let mut c = net.image_train(x).unwrap();
        if !split {
            c.split = None;
        }
        let logits = net.step_forward(&mut c, z, 0.3).unwrap();
        let dz = net
            .step_backward(&mut c, &ops::scale(&logits, 0.5).unwrap())
            .unwrap();
        net.finish_image(c).unwrap();
        let mut out = vec![logits, dz];
        out.extend(net.params().into_iter().map(|p| p.grad.clone()));
        out
    }

    /// The halves of a CPU batch give the whole batch's numbers up to the
    /// last bits (the `gemm` crate picks its kernels by the number of rows),
    /// and the same bits on every run (an uneven batch: 35 and 36 rows).
    #[test]
    fn split_step_forward_matches_the_whole_batch() {
        let dims = (1, 28, 28);
        let mut net = CtNet::new(dims, ConvStack::paper(dims), 10, 10, 3).unwrap();
        let mut rng = RngStream::new(11, 1);
        let b = 71;
        let x = noprop_tensor::ops::randn(&[b, 1, 28, 28], DType::F32, &mut rng).unwrap();
        let z = noprop_tensor::ops::randn(&[b, 10], DType::F32, &mut rng).unwrap();
        let whole = evaluate(&mut net, &x, &z, false);
        let split = evaluate(&mut net, &x, &z, true);
        let again = evaluate(&mut net, &x, &z, true);
        assert_eq!(whole.len(), split.len());
        for (i, ((a, b), c)) in whole.iter().zip(&split).zip(&again).enumerate() {
            assert!(b.bit_eq(c), "output {i} differs between two split runs");
            let (a, b) = (a.to_vec_f64(), b.to_vec_f64());
            let scale = a.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
            let diff = a
                .iter()
                .zip(&b)
                .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                diff <= 1e-5 * scale,
                "output {i}: max |whole − split| = {diff:e}, scale {scale:e}"
            );
        }
        // Not vacuous: the logits and the label-path gradient are not zero.
        assert!(whole[0].to_vec_f64().iter().any(|v| *v != 0.0));
        assert!(whole[1].to_vec_f64().iter().any(|v| *v != 0.0));
    }
}
