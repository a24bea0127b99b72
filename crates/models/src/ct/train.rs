//! Training: one mini-batch of Algorithm 2 (CT, Eq. 9) or Algorithm 3 (FM,
//! Eqs. 10–13), the loss and its gradients into every accumulator.

use noprop_nn::optim::Optimizer;
use noprop_nn::{Mode, ParamMut};
use noprop_schedules::learnable::{kl_z0, kl_z0_dalpha};
use noprop_schedules::ode::{combine_rows, noisy_latent_rows, row_dots, scale_rows};
use noprop_schedules::{fm_extrapolate, fm_path, noisy_latent};
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Tensor};

use super::{stream, ContLoss, ContMethod, NoPropCont, Purpose};
use crate::{Error, Result};

impl NoPropCont {
    fn check_finite(&self, epoch: usize, loss: &ContLoss) -> Result<()> {
        for (term, value) in [("L2", loss.l2), ("cross-entropy", loss.ce), ("KL", loss.kl)] {
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    block: 1,
                    epoch,
                    step: self.step,
                    term,
                    value,
                });
            }
        }
        Ok(())
    }
    /// One mini-batch of Algorithm 2 (CT) or Algorithm 3 (FM) and one Adam
    /// step of every trainable parameter. Advances [`NoPropCont::step`].
    pub fn train_batch(&mut self, x: &Tensor, labels: &[usize], epoch: usize) -> Result<ContLoss> {
        if x.rank() != 4 || x.dim(0) != labels.len() || labels.is_empty() {
            return Err(Error::Config {
                what: format!(
                    "a batch needs images [B, C, H, W] and B labels, got {:?} and {}",
                    x.shape(),
                    labels.len()
                ),
            });
        }
        let loss = self.accumulate_grads(x, labels)?;
        self.check_finite(epoch, &loss)?;
        let mut params: Vec<ParamMut<'_>> = noprop_nn::prefixed("net", self.net.params());
        if self.config.method == ContMethod::Ct || self.config.anchor_ce {
            params.extend(self.classifier.params());
        }
        if let Some(p) = self.embedding.param() {
            params.push(p);
        }
        if let Some(s) = self.schedule.as_mut() {
            let (value, grad) = s.param_and_grad();
            params.push(ParamMut {
                name: super::SCHEDULE_PARAM.into(),
                value,
                grad,
            });
        }
        self.opt.step(params)?;
        self.net.zero_grad();
        for p in self.classifier.params() {
            p.grad.fill(0.0);
        }
        self.embedding.zero_grad();
        if let Some(s) = self.schedule.as_mut() {
            s.zero_grad();
        }
        self.step += 1;
        Ok(loss)
    }

    /// The loss of one mini-batch at the current step (same random draws as
    /// [`NoPropCont::train_batch`]), with its gradients *added* to every
    /// accumulator (network, classifier, `W_Embed`, schedule) and no update:
    /// the seam for gradient checks and for summing gradients across workers.
    pub fn accumulate_grads(&mut self, x: &Tensor, labels: &[usize]) -> Result<ContLoss> {
        match self.config.method {
            ContMethod::Ct => self.ct_grads(x, labels),
            ContMethod::Fm => self.fm_grads(x, labels),
        }
    }
    /// Eq. (9) of arXiv 2503.24322 (Algorithm 2, Eq. 62), gradients into
    /// every accumulator: `L = CE(f_out(z_1), y) + KL(q(z_0|y) ‖ N(0, I)) +
    /// (η/2)·SNR′(t)·‖û_θ(z_t, x, t) − u_y‖²`, batch means, `t ~ U(0, 1)`,
    /// `z_t ~ N(√ᾱ(t)u_y, (1 − ᾱ(t))I)` reparameterised (so the schedule gets
    /// gradients through `ᾱ(t)`, `ᾱ(1)`, `ᾱ(0)` and `SNR′(t)`).
    fn ct_grads(&mut self, x: &Tensor, labels: &[usize]) -> Result<ContLoss> {
        let (seed, step, eta) = (self.config.seed, self.step, self.config.eta);
        let b = labels.len();
        let bf = b as f64;
        let u = self.embedding.lookup(labels)?;
        let d = u.dim(1);
        // The B times are host scalars: the host-side schedule is evaluated
        // at them, and they reach the device as per-row coefficients.
        let ts = ops::rand_uniform(
            &[b],
            DType::F64,
            &mut RngStream::new(seed, stream(Purpose::Time, step)),
        )?
        .to_vec_f64();
        let eps_t = ops::randn_on(
            &self.device,
            &[b, d],
            u.dtype(),
            &mut RngStream::new(seed, stream(Purpose::Zt, step)),
        )?;
        let eps_1 = ops::randn_on(
            &self.device,
            &[b, d],
            u.dtype(),
            &mut RngStream::new(seed, stream(Purpose::Z1, step)),
        )?;
        let sched = self.schedule()?;
        let ats = sched.at_many(&ts);
        let (ab1, ab0) = (sched.alpha_bar(1.0), sched.alpha_bar(0.0));
        let ab: Vec<f64> = ats.iter().map(|a| a.alpha_bar).collect();
        let z_t = noisy_latent_rows(&u, &ab, &eps_t)?;

        // The L2 term through the network.
        self.net.set_rng_key(stream(Purpose::Dropout, step));
        let logits = self.net.forward(x, &z_t, &ts, Mode::Train)?;
        let p = ops::softmax(&logits)?;
        let w = &self.embedding.weight;
        let u_hat = ops::matmul(&p, Transpose::No, w, Transpose::No)?;
        let diff = ops::sub(&u_hat, &u)?;
        let sq = row_dots(&diff, &diff)?;
        let l2 = ats
            .iter()
            .zip(&sq)
            .map(|(a, s)| 0.5 * eta * a.snr_prime * s)
            .sum::<f64>()
            / bf;
        let wts: Vec<f64> = ats.iter().map(|a| eta * a.snr_prime / bf).collect();
        let du_hat = scale_rows(&diff, &wts)?;
        let dp = ops::matmul(&du_hat, Transpose::No, w, Transpose::Yes)?;
        let dlogits = ops::softmax_backward(&p, &dp)?;
        let dz = self.net.backward(&dlogits)?;

        // The classifier on z_1 ~ q(z_1|y).
        let z1 = noisy_latent(&u, ab1, &eps_1)?;
        let lc = self.classifier.logits(&z1, &self.embedding, Mode::Train)?;
        let (ce, dlc) = ops::softmax_cross_entropy(&lc, labels)?;
        let g = self.classifier.backward(&dlc, &self.embedding)?;

        // KL(q(z_0|y) ‖ N(0, I)) with ᾱ_0 = ᾱ(0).
        let usq = row_dots(&u, &u)?;
        let kl = usq.iter().map(|&s| kl_z0(ab0, s, d)).sum::<f64>() / bf;
        let d_ab0 = usq.iter().map(|&s| kl_z0_dalpha(ab0, s, d)).sum::<f64>() / bf;

        // Schedule gradients: z = √ᾱ·u + √(1−ᾱ)·ε ⇒ ∂z/∂ᾱ = u/(2√ᾱ) − ε/(2√(1−ᾱ)).
        let dzu = row_dots(&dz, &u)?;
        let dze = row_dots(&dz, &eps_t)?;
        let mut times = ts.clone();
        let mut d_ab: Vec<f64> = (0..b)
            .map(|i| dzu[i] / (2.0 * ab[i].sqrt()) - dze[i] / (2.0 * (1.0 - ab[i]).sqrt()))
            .collect();
        let mut d_snrp: Vec<f64> = sq.iter().map(|s| 0.5 * eta * s / bf).collect();
        let d_ab1 = ops::dot(&g.dz, &u)? / (2.0 * ab1.sqrt())
            - ops::dot(&g.dz, &eps_1)? / (2.0 * (1.0 - ab1).sqrt());
        times.extend([1.0, 0.0]);
        d_ab.extend([d_ab1, d_ab0]);
        d_snrp.extend([0.0, 0.0]);
        if let Some(s) = self.schedule.as_mut() {
            s.accumulate_grad(&times, &d_ab, &d_snrp)?;
        }

        // W_Embed: output û = p·W, target u_y, noisy inputs z_t and z_1, and the KL term.
        if self.embedding.trainable() {
            let mut dw = ops::matmul(&p, Transpose::Yes, &du_hat, Transpose::No)?;
            let sab: Vec<f64> = ab.iter().map(|a| a.sqrt()).collect();
            let ones = vec![-1.0; b];
            let mut drow = combine_rows(&ones, &du_hat, &sab, &dz)?;
            ops::axpy(&mut drow, ab1.sqrt(), &g.dz)?;
            ops::axpy(&mut drow, ab0 / bf, &u)?;
            ops::add_assign(
                &mut dw,
                &ops::scatter_add_rows(&drow, labels, self.config.classes)?,
            )?;
            ops::add_assign(self.embedding.grad_mut(), &dw)?;
        }
        Ok(ContLoss { l2, ce, kl })
    }

    /// Eq. (11) of arXiv 2503.24322 (Algorithm 3): `‖v̂_θ(z_t, x, t) − (z_1 − z_0)‖²`
    /// with `z_1 = u_y`, `z_0 ~ N(0, I)`, `z_t` on the path of Eq. 10; with
    /// the anchor on, plus Eq. 13's `−log p̂_θout(y | z̃_1)`,
    /// `z̃_1 = z_t + (1 − t)·v̂` (Eq. 12). Gradients into every accumulator.
    fn fm_grads(&mut self, x: &Tensor, labels: &[usize]) -> Result<ContLoss> {
        let (seed, step) = (self.config.seed, self.step);
        let b = labels.len();
        let bf = b as f64;
        let u = self.embedding.lookup(labels)?;
        let d = u.dim(1);
        // The B times are host scalars: the host-side schedule is evaluated
        // at them, and they reach the device as per-row coefficients.
        let ts = ops::rand_uniform(
            &[b],
            DType::F64,
            &mut RngStream::new(seed, stream(Purpose::Time, step)),
        )?
        .to_vec_f64();
        let z0 = ops::randn_on(
            &self.device,
            &[b, d],
            u.dtype(),
            &mut RngStream::new(seed, stream(Purpose::FmZ0, step)),
        )?;
        let eps = if self.config.fm_sigma > 0.0 {
            Some(ops::randn_on(
                &self.device,
                &[b, d],
                u.dtype(),
                &mut RngStream::new(seed, stream(Purpose::FmEps, step)),
            )?)
        } else {
            None
        };
        let z_t = fm_path(&z0, &u, &ts, self.config.fm_sigma, eps.as_ref())?;
        self.net.set_rng_key(stream(Purpose::Dropout, step));
        let logits = self.net.forward(x, &z_t, &ts, Mode::Train)?;
        let w = &self.embedding.weight;
        let v = ops::matmul(&logits, Transpose::No, w, Transpose::No)?;
        let target = ops::sub(&u, &z0)?;
        let diff = ops::sub(&v, &target)?;
        let l2 = ops::sum_sq(&diff)? / bf;
        let d_mse = ops::scale(&diff, 2.0 / bf)?;
        let mut dv = d_mse.clone();
        let mut ce = 0.0;
        let mut dz_direct = None;
        if self.config.anchor_ce {
            let zt1 = fm_extrapolate(&z_t, &v, &ts)?;
            let lc = self.classifier.logits(&zt1, &self.embedding, Mode::Train)?;
            let (c, dlc) = ops::softmax_cross_entropy(&lc, labels)?;
            ce = c;
            let g = self.classifier.backward(&dlc, &self.embedding)?;
            let om: Vec<f64> = ts.iter().map(|t| 1.0 - t).collect();
            ops::add_assign(&mut dv, &scale_rows(&g.dz, &om)?)?;
            dz_direct = Some(g.dz);
        }
        let dlogits = ops::matmul(&dv, Transpose::No, w, Transpose::Yes)?;
        let mut dz = self.net.backward(&dlogits)?;
        if let Some(dd) = dz_direct {
            ops::add_assign(&mut dz, &dd)?;
        }
        if self.embedding.trainable() {
            // v = logits·W: ∂W += logitsᵀ·∂v; target u_y: −∂mse; z_t = t·u_y + …: t·∂z_t.
            let mut dw = ops::matmul(&logits, Transpose::Yes, &dv, Transpose::No)?;
            let neg = vec![-1.0; b];
            let drow = combine_rows(&neg, &d_mse, &ts, &dz)?;
            ops::add_assign(
                &mut dw,
                &ops::scatter_add_rows(&drow, labels, self.config.classes)?,
            )?;
            ops::add_assign(self.embedding.grad_mut(), &dw)?;
        }
        Ok(ContLoss { l2, ce, kl: 0.0 })
    }
}
