//! Optimisers: Adam (coupled L2), AdamW (decoupled decay), SGD with momentum;
//! gradient-norm clipping ([`clip_grad_norm`]).
//!
//! State is kept per parameter *name*, so an optimiser can be saved to and
//! restored from a checkpoint ([`Optimizer::state`] / [`Optimizer::load_state`]).

use std::cell::RefCell;
use std::collections::BTreeMap;

use noprop_tensor::ops::{self, AdamHyper};
use noprop_tensor::Tensor;

use crate::state::{join, StateDict, StateVisitor};
use crate::{Error, ParamMut, Result};

/// A first-order optimiser.
pub trait Optimizer: Send {
    /// Update every parameter from its gradient (gradients are not cleared).
    fn step(&mut self, params: Vec<ParamMut<'_>>) -> Result<()>;
    /// Named state tensors (for checkpoints), including the step counter as a
    /// one-element tensor named `step`.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restore state written by [`Optimizer::state`].
    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()>;
    /// The learning rate.
    fn lr(&self) -> f64;
    /// Change the learning rate (schedules).
    fn set_lr(&mut self, lr: f64);
}

/// A function every optimiser step on this thread passes its parameters
/// to first (see [`with_grad_hook`]).
pub type GradHook = Box<dyn for<'a> FnMut(&mut [ParamMut<'a>]) -> Result<()>>;

thread_local! {
    static GRAD_HOOK: RefCell<Option<GradHook>> = const { RefCell::new(None) };
}

/// Run `f` with `hook` installed on this thread: every [`Adam`] or [`Sgd`]
/// step taken by `f` on this thread first hands its parameters to `hook`,
/// between the gradients' computation and their use — where data-parallel
/// training sums the gradients of all ranks. Steps on other threads (rayon
/// workers) do not see it. The previous hook is restored afterwards.
pub fn with_grad_hook<R>(hook: GradHook, f: impl FnOnce() -> R) -> R {
    let previous = GRAD_HOOK.with(|h| h.borrow_mut().replace(hook));
    let out = f();
    GRAD_HOOK.with(|h| *h.borrow_mut() = previous);
    out
}

/// Call this thread's gradient hook, if one is installed.
fn run_grad_hook(params: &mut [ParamMut<'_>]) -> Result<()> {
    let Some(mut hook) = GRAD_HOOK.with(|h| h.borrow_mut().take()) else {
        return Ok(());
    };
    let out = hook(params);
    GRAD_HOOK.with(|h| *h.borrow_mut() = Some(hook));
    out
}

/// Clip the global gradient norm of `params` to `max_norm`
/// (`torch.nn.utils.clip_grad_norm_` with the 2-norm):
///
/// `‖g‖ = √(Σ_p Σ_i g_{p,i}²)` over every gradient of `params` together, then
/// `g ← g·min(1, c/(‖g‖ + 10⁻⁶))` with `c = max_norm` — the gradients keep
/// their direction and shrink only when their norm exceeds `c` (the `10⁻⁶`
/// is PyTorch's, and keeps a zero gradient finite). Returns `‖g‖` before
/// clipping. Call it between the gradients' computation and the optimiser
/// step; a model whose gradients are summed across ranks inside the step
/// (data-parallel training's gradient hook) would clip per rank, so such a
/// model must not use it.
///
/// `max_norm` must be positive and finite; a non-finite norm (an overflowed
/// gradient) is returned as it is and leaves the gradients untouched, so
/// the loss check that follows reports the failure.
pub fn clip_grad_norm(params: &mut [ParamMut<'_>], max_norm: f64) -> Result<f64> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(Error::ClipNorm { max_norm });
    }
    let mut sum_sq = 0.0;
    for p in params.iter() {
        sum_sq += ops::sum_sq(p.grad)?;
    }
    let norm = sum_sq.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if norm.is_finite() && coef < 1.0 {
        for p in params.iter_mut() {
            ops::scale_in_place(p.grad, coef)?;
        }
    }
    Ok(norm)
}

/// Adam or AdamW.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Hyper-parameters.
    pub hyper: AdamHyper,
    t: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

impl Adam {
    /// Adam with coupled L2 weight decay (`torch.optim.Adam`), betas (0.9, 0.999), ε = 1e-8.
    #[allow(clippy::self_named_constructors)]
    pub fn adam(lr: f64, weight_decay: f64) -> Self {
        Self::with_hyper(AdamHyper {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled: false,
        })
    }

    /// AdamW with decoupled weight decay (`torch.optim.AdamW`), betas (0.9, 0.999), ε = 1e-8.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        Self::with_hyper(AdamHyper {
            decoupled: true,
            ..Self::adam(lr, weight_decay).hyper
        })
    }

    /// From explicit hyper-parameters.
    pub fn with_hyper(hyper: AdamHyper) -> Self {
        Adam {
            hyper,
            t: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// Move the moment estimates to `device` (where the parameters live).
    pub fn to_device(&mut self, device: &noprop_tensor::Device) -> Result<()> {
        self.to_device_where(device, |_| true)
    }

    /// Move the moment estimates of the parameters whose name satisfies
    /// `moves` to `device`, leaving the others where they are (for a model
    /// whose parameters do not all live on one device, e.g. NoProp-CT's
    /// host-side learnable schedule).
    pub fn to_device_where(
        &mut self,
        device: &noprop_tensor::Device,
        moves: impl Fn(&str) -> bool,
    ) -> Result<()> {
        for (name, t) in self.m.iter_mut().chain(self.v.iter_mut()) {
            if moves(name) {
                *t = t.to_device(device)?;
            }
        }
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self, mut params: Vec<ParamMut<'_>>) -> Result<()> {
        run_grad_hook(&mut params)?;
        self.t += 1;
        for p in params {
            let m = self
                .m
                .entry(p.name.clone())
                .or_insert_with(|| p.value.zeros_like());
            let v = self
                .v
                .entry(p.name.clone())
                .or_insert_with(|| p.value.zeros_like());
            if m.shape() != p.value.shape() {
                return Err(Error::OptimizerState {
                    what: format!(
                        "state for `{}` has shape {:?}, parameter {:?}",
                        p.name,
                        m.shape(),
                        p.value.shape()
                    ),
                });
            }
            ops::adam_update(p.value, p.grad, m, v, &self.hyper, self.t)?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "step".to_string(),
            Tensor::scalar(self.t as f64, noprop_tensor::DType::F64),
        )];
        for (k, t) in &self.m {
            out.push((format!("{k}.exp_avg"), t.clone()));
        }
        for (k, t) in &self.v {
            out.push((format!("{k}.exp_avg_sq"), t.clone()));
        }
        out
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.m.clear();
        self.v.clear();
        self.t = 0;
        for (k, t) in state {
            if k == "step" {
                self.t = t.item()? as u64;
            } else if let Some(n) = k.strip_suffix(".exp_avg_sq") {
                self.v.insert(n.to_string(), t);
            } else if let Some(n) = k.strip_suffix(".exp_avg") {
                self.m.insert(n.to_string(), t);
            } else {
                return Err(Error::OptimizerState {
                    what: format!("unknown Adam state entry `{k}`"),
                });
            }
        }
        if self.m.len() != self.v.len() {
            return Err(Error::OptimizerState {
                what: "first and second moments name different parameters".into(),
            });
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.hyper.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.hyper.lr = lr;
    }
}

/// `{prefix}.step` (the step count `t` of the bias corrections), then
/// `{prefix}.{param}.exp_avg` and `{prefix}.{param}.exp_avg_sq` (the moments
/// `m` and `v`) of every parameter stepped so far: the names of
/// [`Optimizer::state`] under `prefix`.
impl StateDict for Adam {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> Result<()> {
        v.counter(&join(prefix, "step"), &mut self.t)?;
        v.tensor_map(prefix, ".exp_avg", &mut self.m)?;
        v.tensor_map(prefix, ".exp_avg_sq", &mut self.v)?;
        if !self.m.keys().eq(self.v.keys()) {
            return Err(Error::OptimizerState {
                what: "first and second moments name different parameters".into(),
            });
        }
        Ok(())
    }
}

/// SGD with momentum and coupled weight decay (`torch.optim.SGD`, no dampening, not Nesterov).
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ.
    pub momentum: f64,
    /// Weight decay λ.
    pub weight_decay: f64,
    buf: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// SGD with momentum.
    pub fn new(lr: f64, momentum: f64, weight_decay: f64) -> Self {
        Sgd {
            lr,
            momentum,
            weight_decay,
            buf: BTreeMap::new(),
        }
    }
}

impl Sgd {
    /// Move the momentum buffers to `device` (where the parameters live).
    pub fn to_device(&mut self, device: &noprop_tensor::Device) -> Result<()> {
        for t in self.buf.values_mut() {
            *t = t.to_device(device)?;
        }
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, mut params: Vec<ParamMut<'_>>) -> Result<()> {
        run_grad_hook(&mut params)?;
        for p in params {
            let b = self
                .buf
                .entry(p.name.clone())
                .or_insert_with(|| p.value.zeros_like());
            ops::sgd_momentum_update(
                p.value,
                p.grad,
                b,
                self.lr,
                self.momentum,
                self.weight_decay,
            )?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.buf
            .iter()
            .map(|(k, t)| (format!("{k}.momentum_buffer"), t.clone()))
            .collect()
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.buf.clear();
        for (k, t) in state {
            let n = k
                .strip_suffix(".momentum_buffer")
                .ok_or_else(|| Error::OptimizerState {
                    what: format!("unknown SGD state entry `{k}`"),
                })?;
            self.buf.insert(n.to_string(), t);
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
}

/// `{prefix}.{param}.momentum_buffer` of every parameter stepped so far: the
/// names of [`Optimizer::state`] under `prefix`.
impl StateDict for Sgd {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> Result<()> {
        v.tensor_map(prefix, ".momentum_buffer", &mut self.buf)
    }
}
