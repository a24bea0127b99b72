//! Forward-Forward, supervised variant (Hinton, "The Forward-Forward
//! Algorithm: Some Preliminary Investigations", 2022, arXiv 2212.13345).
//!
//! The label is written into the image: its first `classes` inputs are set
//! to zero except input `y`, which is set to the largest value of the image
//! (§ 3.3). A *positive* sample carries the true label, a *negative* one a
//! wrong label drawn uniformly from the others (from the seed and step).
//! Every layer is trained on its own, at once, by the logistic loss of its
//! goodness `G = Σ_j h_j²` (the sum of the squared activities, the paper's
//! Eq. 1; re-implementations often use the mean, which divides θ by the
//! width) against a threshold θ: `p(positive) = σ(G − θ)` (Eq. 1), so
//! `ℓ = mean_i softplus(θ − G(x⁺_i)) + softplus(G(x⁻_i) − θ)` over the `2B`
//! samples. Each layer's input is length-normalised,
//! `x / (‖x‖ + 10⁻⁴)` (§ 2.1), and detached: no gradient passes between
//! layers. Prediction runs the image once with each label and takes the
//! label with the largest goodness summed over all layers but the first
//! (§ 3.3; all layers when there is only one).

use noprop_nn::Mode;
use noprop_tensor::Tensor;

use super::mlp::{normalize_rows, row_sum_sq, scale_rows};
use super::Relative;
use crate::Result;

/// `x` with the label `y_i` written into the first `classes` inputs of row `i`.
pub fn embed_labels(x: &Tensor, y: &[usize], classes: usize) -> Result<Tensor> {
    let d = x.dim(1);
    let mut v = x.try_to_vec_f64()?;
    for (row, &label) in v.chunks_mut(d).zip(y) {
        let top = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        row[..classes].iter_mut().for_each(|e| *e = 0.0);
        row[label] = top;
    }
    let t = Tensor::from_vec(v, x.shape())?;
    Ok(t.to_dtype(x.dtype()))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A wrong label for each sample, uniform over the other classes, a pure
/// function of `(seed, step, i)`.
pub fn negative_labels(y: &[usize], classes: usize, seed: u64, step: u64) -> Vec<usize> {
    let base = splitmix(seed ^ splitmix(step ^ 0x5ff0_0000));
    y.iter()
        .enumerate()
        .map(|(i, &l)| {
            let r = splitmix(base ^ (i as u64)) % (classes as u64 - 1);
            (l + 1 + r as usize) % classes
        })
        .collect()
}

/// Per-layer loss and `∂ℓ/∂h` for activities `h` (`[2B, d]`, positives in
/// the first half): `ℓ = (1/2B) Σ softplus(s_i (θ − G_i))`, `s = +1` for
/// positives and `−1` for negatives, `∂G_i/∂h_ij = 2 h_ij`.
pub fn layer_loss(h: &Tensor, theta: f64) -> Result<(f64, Tensor)> {
    let n = h.dim(0);
    let half = n / 2;
    let g = row_sum_sq(h)?;
    let mut loss = 0.0;
    let mut dg = vec![0.0; n];
    for (i, (gi, dgi)) in g.iter().zip(dg.iter_mut()).enumerate() {
        let s = if i < half { 1.0 } else { -1.0 };
        let z = s * (theta - gi);
        // softplus(z) = max(z, 0) + ln(1 + e^{−|z|}); its derivative σ(z).
        loss += z.max(0.0) + (-z.abs()).exp().ln_1p();
        let sig = 1.0 / (1.0 + (-z).exp());
        *dgi = -s * sig / n as f64 * 2.0;
    }
    Ok((loss / n as f64, scale_rows(h, &dg)?))
}

/// One step: the positive and negative batches through every layer, each
/// layer updated from its own loss; returns the sum of the `L` layer losses.
pub(crate) fn train_batch(m: &mut Relative, x: &Tensor, y: &[usize]) -> Result<(f64, usize)> {
    let c = m.config.classes;
    let neg = negative_labels(y, c, m.config.seed, m.step);
    let pos = embed_labels(x, y, c)?;
    let negx = embed_labels(x, &neg, c)?;
    let mut h = super::mlp::concat_rows(&pos, &negx)?;
    let theta = m.config.ff_threshold;
    let depth = m.nets[0].depth();
    let mut total = 0.0;
    for k in 0..depth {
        let inp = normalize_rows(&h)?;
        h = m.nets[0].layer_forward(k, &inp, Mode::Train)?;
        let (loss, dh) = layer_loss(&h, theta)?;
        total += loss;
        m.nets[0].local_backward(k, &dh)?;
    }
    m.update(&[0])?;
    Ok((total, depth))
}

/// `argmax_y Σ_{k ≥ 2} G_k(x with label y)`.
pub(crate) fn predict(m: &mut Relative, x: &Tensor) -> Result<Vec<usize>> {
    let (b, c) = (x.dim(0), m.config.classes);
    let depth = m.nets[0].depth();
    let first = usize::from(depth > 1);
    let mut score = vec![vec![0.0f64; c]; b];
    for label in 0..c {
        let mut h = embed_labels(x, &vec![label; b], c)?;
        for k in 0..depth {
            h = m.nets[0].layer_forward(k, &normalize_rows(&h)?, Mode::Eval)?;
            if k >= first {
                for (s, q) in score.iter_mut().zip(row_sum_sq(&h)?) {
                    s[label] += q;
                }
            }
        }
    }
    Ok(score
        .iter()
        .map(|s| (1..c).fold(0, |best, j| if s[j] > s[best] { j } else { best }))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use noprop_tensor::{ops, philox::RngStream, DType};

    #[test]
    fn layer_loss_gradient_matches_finite_differences() {
        let mut rng = RngStream::new(2, 3);
        let h = ops::randn(&[6, 4], DType::F64, &mut rng).unwrap();
        let (_, dh) = layer_loss(&h, 0.7).unwrap();
        let g = dh.to_vec_f64();
        let eps = 1e-6;
        for j in 0..g.len() {
            let at = |by: f64| {
                let mut v = h.to_vec_f64();
                v[j] += by;
                layer_loss(&Tensor::from_vec(v, h.shape()).unwrap(), 0.7)
                    .unwrap()
                    .0
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!((fd - g[j]).abs() < 1e-8, "[{j}]: {} vs {fd}", g[j]);
        }
    }

    #[test]
    fn negatives_are_wrong_and_labels_are_written() {
        let y: Vec<usize> = (0..100).map(|i| i % 10).collect();
        let n = negative_labels(&y, 10, 0, 5);
        assert!(y.iter().zip(&n).all(|(a, b)| a != b && *b < 10));
        assert_eq!(n, negative_labels(&y, 10, 0, 5));
        let x = Tensor::from_vec(vec![0.5f32; 24], &[2, 12]).unwrap();
        let e = embed_labels(&x, &[3, 0], 10).unwrap().to_vec_f64();
        assert_eq!(
            &e[..12],
            &[0., 0., 0., 0.5, 0., 0., 0., 0., 0., 0., 0.5, 0.5]
        );
        assert_eq!(e[12], 0.5);
    }
}
