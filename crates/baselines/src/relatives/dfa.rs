//! Direct Feedback Alignment and Direct Random Target Projection: every
//! hidden layer learns from a fixed random projection of one signal from
//! the top, instead of the transported weights of back-propagation.
//!
//! * **DFA** (Nøkland, "Direct Feedback Alignment Provides Learning in Deep
//!   Neural Networks", NeurIPS 2016, arXiv 1609.01596, § 2): with the output
//!   error `e = ∂L/∂a_L = (softmax(a_L) − y)/B` of the cross-entropy, hidden
//!   layer `k` receives `δa_k = (e B_k) ⊙ f'(a_k)` (the paper writes
//!   `(B_k e) ⊙ f'(a_k)` with column vectors), and `δW_k = δa_k h_{k−1}ᵀ`.
//! * **DRTP** (Frenkel, Lefebvre & Bol, "Learning Without Feedback: Fixed
//!   Random Learning Signals Allow for Feedforward Training of Deep Neural
//!   Networks", Frontiers in Neuroscience 2021, arXiv 1909.01311): the error
//!   is replaced by the target itself, `δa_k = (−y* B_k / B) ⊙ f'(a_k)`: the
//!   sign of `e = ŷ − y*` is known from the label alone (negative on the true
//!   class), so the hidden layers need neither the output nor a backward
//!   pass, and all layers update as soon as their forward pass is done.
//!
//! In both, the output layer learns from its own exact gradient `e`, each
//! `B_k` is drawn once (`U(±1/√classes)`, from the seed) and never changes,
//! and nothing flows from one layer into another during learning.

use noprop_nn::init;
use noprop_nn::{Mode, Module};
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::Tensor;

use super::mlp::one_hot;
use super::{Relative, RelativeConfig, RelativeMethod};
use crate::Result;

/// The fixed `B_k`, `[classes, h_k]`, one per hidden layer.
pub(crate) fn feedback_matrices(c: &RelativeConfig) -> Vec<Tensor> {
    let bound = 1.0 / (c.classes as f64).sqrt();
    c.hidden
        .iter()
        .enumerate()
        .map(|(k, &h)| {
            init::uniform(
                &[c.classes, h],
                bound,
                c.seed,
                &format!("feedback.B{}", k + 1),
            )
        })
        .collect()
}

/// The local error `δa_k` of every hidden layer and `e` of the output layer,
/// from a forward pass already run in training mode.
pub(crate) fn deltas(m: &Relative, logits: &Tensor, y: &[usize]) -> Result<(f64, Vec<Tensor>)> {
    let (ce, e) = ops::softmax_cross_entropy(logits, y)?;
    let signal = match m.config.method {
        RelativeMethod::Drtp => {
            let b = y.len().max(1) as f64;
            ops::scale(&one_hot(y, m.config.classes, logits.dtype())?, -1.0 / b)?
        }
        _ => e.clone(),
    };
    let net = &m.nets[0];
    let mut out = Vec::with_capacity(net.depth());
    for (k, bk) in m.feedback.iter().enumerate() {
        let proj = ops::matmul(&signal, Transpose::No, bk, Transpose::No)?;
        out.push(net.act.backward(&proj, &net.outputs()[k])?);
    }
    out.push(e);
    Ok((ce, out))
}

/// One step: forward, the local errors, every layer's own update.
pub(crate) fn train_batch(m: &mut Relative, x: &Tensor, y: &[usize]) -> Result<(f64, usize)> {
    let logits = m.nets[0].forward(x, Mode::Train)?;
    let (ce, ds) = deltas(m, &logits, y)?;
    let last = ds.len() - 1;
    for (k, d) in ds.iter().enumerate() {
        if k == last {
            // The output layer: its exact gradient (no activation after it).
            m.nets[0].local_backward(k, d)?;
        } else {
            // δa_k is already through f': go straight into the affine map.
            m.nets[0].layers[k].backward(d)?;
        }
    }
    m.update(&[0])?;
    Ok((ce, 1))
}

#[cfg(test)]
mod tests {
    use super::super::RelativeConfig;
    use super::*;
    use noprop_tensor::{philox::RngStream, DType};

    /// With one hidden layer and `B_1` set to the output weights `W_2`, DFA's
    /// update of `W_1` is exactly back-propagation's (the alignment the
    /// method relies on); checked against finite differences of the
    /// cross-entropy in f64.
    #[test]
    fn dfa_with_b_equal_to_w_is_the_exact_gradient() {
        let mut c = RelativeConfig::defaults(RelativeMethod::Dfa, (1, 2, 3), 4, 3);
        c.hidden = vec![5];
        let mut m = Relative::new(c).unwrap();
        m.convert_dtype(DType::F64);
        m.feedback[0] = m.nets[0].layers[1].weight.clone();
        let mut rng = RngStream::new(0, 1);
        let x = ops::randn(&[3, 6], DType::F64, &mut rng).unwrap();
        let y = [0usize, 3, 1];
        let logits = m.nets[0].forward(&x, Mode::Train).unwrap();
        let (_, ds) = deltas(&m, &logits, &y).unwrap();
        m.nets[0].layers[0].backward(&ds[0]).unwrap();
        let g = m.nets[0].layers[0].params()[0].grad.to_vec_f64();
        let eps = 1e-6;
        for j in [0usize, 7, 13, 29] {
            let mut ce = |by: f64| {
                let w = &mut m.nets[0].layers[0].weight;
                let mut v = w.to_vec_f64();
                v[j] += by;
                *w = Tensor::from_vec(v, w.shape()).unwrap();
                let l = m.nets[0].forward(&x, Mode::Eval).unwrap();
                ops::softmax_cross_entropy(&l, &y).unwrap().0
            };
            let up = ce(eps);
            let down = ce(-2.0 * eps);
            ce(eps);
            let fd = (up - down) / (2.0 * eps);
            assert!((fd - g[j]).abs() < 1e-7, "w[{j}]: dfa {} vs fd {fd}", g[j]);
        }
    }
}
