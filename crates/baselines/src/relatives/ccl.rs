//! Counter-Current Learning (Kao & Hariharan, "Counter-Current Learning: A
//! Biologically Plausible Dual Network Approach for Deep Learning", NeurIPS
//! 2024, arXiv 2409.19841).
//!
//! Two networks run in opposite directions: the forward network
//! `a_l = f(W_l a_{l−1})`, `a_0 = x`, maps the image to the logits `a_L`; the
//! feedback network `b_{l−1} = f(V_l b_l)`, `b_L = y` (one-hot; no
//! activation on `b_0`), maps the target down to the input space, with the
//! mirrored widths. Each layer pair `(a_l, b_l)`, `l = 0…L−1`, is tied by a
//! local loss, and stop-gradients cut every path between layers: the input
//! of each layer (in either network) is detached, so forward layer `l`
//! learns only from pair `l` through `a_l`, and feedback layer `l+1` only
//! from pair `l` through `b_l` — no error crosses a layer, no weight is
//! transported, and both networks learn at once from each other's signals.
//!
//! Two forms of the pair loss are implemented ([`CclLoss`]):
//!
//! * **`Paper`** — as we read the paper's text: the squared distance of each
//!   sample's forward activation to the feedback activation of *its own*
//!   target, `ℓ_l = (1/B) Σ_i ‖a_l(x_i) − b_l(y_i)‖²`, with
//!   `sg(b_l)` in the forward layer's gradient and `sg(a_l)` in the feedback
//!   layer's; the output layer is the pair `(a_L, b_L = y)` with the same
//!   squared loss.
//! * **`Code`** — the authors' released code (`utils/loss.py`,
//!   `C2Loss_Classification` of github.com/IandRover/CCL-NeurIPS24): the
//!   feedback network runs on all ten one-hots, the forward activations of
//!   the batch are compared with the feedback activations of *every* class
//!   through dot products, `C = A_l B_lᵀ` (`[B, classes]`), regressed on the
//!   one-hot labels, `ℓ_l = 128/(B·classes·d_l)·‖C − Y‖²` (their
//!   `mse_loss(C, Y)/d_l · 0.5 · 256`), and the output layer is trained by
//!   cross-entropy instead. The dot-product form is contrastive (a sample
//!   is pushed away from the other classes' feedback activations, not only
//!   towards its own), which the text's squared distance is not.
//!
//! The paper's form collapses in our runs: the feedback activations are
//! pulled towards the forward activations as fast as these are pulled
//! towards them, both shrink to one point for every class, and the test
//! accuracy on `mnist-test-split` stays at chance (0.115 after 4 epochs);
//! the code's contrastive form reaches 0.9275 in 10 epochs, so it is the
//! default (`--ccl-loss paper` selects the other).
//!
//! Both are trained here with the framework's AdamW (the code uses SGD with
//! lr 1 and gradient clipping at norm 1).

use noprop_nn::Mode;
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::Tensor;

use super::mlp::one_hot;
use super::{CclLoss, Relative};
use crate::Result;

/// The pair loss `ℓ` and its gradients with respect to the forward
/// activations `a` (`[B, d]`) and the per-class feedback activations `c`
/// (`[classes, d]`, row `k` = `b_l` of class `k`).
pub fn pair_loss(
    kind: CclLoss,
    a: &Tensor,
    c: &Tensor,
    y: &[usize],
) -> Result<(f64, Tensor, Tensor)> {
    let b = a.dim(0).max(1) as f64;
    let classes = c.dim(0);
    match kind {
        CclLoss::Paper => {
            let target = ops::gather_rows(c, y)?;
            let diff = ops::sub(a, &target)?;
            let loss = ops::sum_sq(&diff)? / b;
            let da = ops::scale(&diff, 2.0 / b)?;
            let dc = ops::scatter_add_rows(&ops::scale(&diff, -2.0 / b)?, y, classes)?;
            Ok((loss, da, dc))
        }
        CclLoss::Code => {
            let d = a.dim(1).max(1) as f64;
            let k = 128.0 / (b * classes as f64 * d);
            let sim = ops::matmul(a, Transpose::No, c, Transpose::Yes)?;
            let r = ops::sub(&sim, &one_hot(y, classes, a.dtype())?)?;
            let loss = k * ops::sum_sq(&r)?;
            let da = ops::scale(&ops::matmul(&r, Transpose::No, c, Transpose::No)?, 2.0 * k)?;
            let dc = ops::scale(&ops::matmul(&r, Transpose::Yes, a, Transpose::No)?, 2.0 * k)?;
            Ok((loss, da, dc))
        }
    }
}

/// One step: both networks forward, every pair's local loss, each layer's
/// own update; returns the sum of the `L + 1` local losses and `L + 1`.
pub(crate) fn train_batch(m: &mut Relative, x: &Tensor, y: &[usize]) -> Result<(f64, usize)> {
    let kind = m.config.ccl_loss;
    let classes = m.config.classes;
    let big_l = m.nets[0].depth();
    let logits = m.nets[0].forward(x, Mode::Train)?;
    // The feedback network on the identity: row k of b_l is class k's.
    let eye = one_hot(&(0..classes).collect::<Vec<_>>(), classes, x.dtype())?;
    m.nets[1].forward(&eye, Mode::Train)?;
    let fb_outs = m.nets[1].outputs().to_vec();
    let fw_outs = m.nets[0].outputs().to_vec();
    let mut total = 0.0;
    for l in 0..big_l {
        // a_l: x for l = 0, else forward layer l's output. b_l: feedback
        // layer (L − l)'s output (0-based index L − 1 − l).
        let a = if l == 0 {
            x.clone()
        } else {
            fw_outs[l - 1].clone()
        };
        let fb = big_l - 1 - l;
        let (loss, da, dc) = pair_loss(kind, &a, &fb_outs[fb], y)?;
        total += loss;
        m.nets[1].local_backward(fb, &dc)?;
        if l > 0 {
            m.nets[0].local_backward(l - 1, &da)?;
        }
    }
    // The output pair (a_L, y).
    let out_loss = match kind {
        CclLoss::Paper => {
            let b = y.len().max(1) as f64;
            let diff = ops::sub(&logits, &one_hot(y, classes, logits.dtype())?)?;
            m.nets[0].local_backward(big_l - 1, &ops::scale(&diff, 2.0 / b)?)?;
            ops::sum_sq(&diff)? / b
        }
        CclLoss::Code => {
            let (ce, d) = ops::softmax_cross_entropy(&logits, y)?;
            m.nets[0].local_backward(big_l - 1, &d)?;
            ce
        }
    };
    total += out_loss;
    m.update(&[0, 1])?;
    Ok((total, big_l + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use noprop_tensor::{philox::RngStream, DType};

    #[test]
    fn pair_loss_gradients_match_finite_differences() {
        let mut rng = RngStream::new(4, 5);
        let a = ops::randn(&[4, 3], DType::F64, &mut rng).unwrap();
        let c = ops::randn(&[5, 3], DType::F64, &mut rng).unwrap();
        let y = [1usize, 4, 1, 0];
        for kind in [CclLoss::Paper, CclLoss::Code] {
            let (_, da, dc) = pair_loss(kind, &a, &c, &y).unwrap();
            let eps = 1e-6;
            for (which, grad) in [(0, &da), (1, &dc)] {
                let g = grad.to_vec_f64();
                for j in 0..g.len() {
                    let at = |by: f64| {
                        let (mut a2, mut c2) = (a.to_vec_f64(), c.to_vec_f64());
                        if which == 0 {
                            a2[j] += by
                        } else {
                            c2[j] += by
                        }
                        let a2 = Tensor::from_vec(a2, a.shape()).unwrap();
                        let c2 = Tensor::from_vec(c2, c.shape()).unwrap();
                        pair_loss(kind, &a2, &c2, &y).unwrap().0
                    };
                    let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                    assert!(
                        (fd - g[j]).abs() < 1e-6,
                        "{kind:?} {which}[{j}]: {} vs {fd}",
                        g[j]
                    );
                }
            }
        }
    }
}
