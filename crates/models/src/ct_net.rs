//! The single shared network `û_θ(z_t, x, t)` / `v̂_θ(z_t, x, t)` of
//! NoProp-CT and NoProp-FM (docs/DECISIONS.md, note G.2), with the
//! image-path cache of docs/DECISIONS.md § 17.

use noprop_nn::layers::{mix_stream, FrozenLinear, Linear, Sequential, SinusoidalTimeEmbedding};
use noprop_nn::state::{join, StateDict, StateVisitor};
use noprop_nn::{prefixed, Mode, Module, ParamMut};
use noprop_tensor::ops::{self, FoldedRows, LayerAddend, MlpLayer, PackedMlp, Transpose};
use noprop_tensor::{Device, Tensor};

use crate::block::{image_path, ConvStack, ImageDims};
use crate::Result;

mod halves;
mod step;

pub use halves::{row_halves, stack_row_halves};
pub use step::TrainImageCache;

/// Width of the sinusoidal time embedding (docs/DECISIONS.md § 8).
pub const TIME_EMBED_DIM: usize = 64;

/// The noised-label path: one FC(256) + ReLU, or (prototype embedding) its
/// own copy of the conv image path.
#[derive(Debug)]
enum LabelPath {
    Fc(Linear),
    Conv(Sequential, ImageDims),
}

/// The CT/FM network of docs/DECISIONS.md, note G.2. It outputs `m` logits; CT forms
/// `û = softmax(logits)·W_Embed`, FM `v̂ = logits·W_Embed`.
///
/// * image path: conv stack (dropout 0.2, no batch-norm) → FC 256 → ReLU;
/// * label path: FC(d → 256) → ReLU, or the prototype conv path;
/// * time path: 64-d sinusoidal embedding → FC 256 → ReLU;
/// * fusion: concat (768) → FC 256 → ReLU → FC 128 → ReLU → FC m.
///
/// The image path depends on `x` only, so inference runs it once per image
/// ([`CtNet::prepare`]) and each ODE step only runs the label, time and
/// fusion layers ([`CtNet::forward_cached`]).
#[derive(Debug)]
pub struct CtNet {
    img: Sequential,
    label: LabelPath,
    temb: SinusoidalTimeEmbedding,
    time_fc: Linear,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

/// Frozen copies ([`FrozenLinear`]) of the layers every evaluation on a
/// cached image path runs after the time path: the FC label layer, the
/// label block `W1_z` of the first fusion layer (`[256, 256]`), fc2 and
/// fc3. Their weights are also kept transposed, so that repeated
/// evaluations with the same weights (the 1000 steps of inference, the
/// adjoint's Euler steps and state recoveries) read them as stored.
#[derive(Clone, Debug)]
pub(crate) struct FrozenHead {
    label: Option<FrozenLinear>,
    w1_z: FrozenLinear,
    fc2: FrozenLinear,
    fc3: FrozenLinear,
}

impl FrozenHead {
    /// `[h1, h2, logits]`: `h1 = ReLU(P + f(z)·W1_zᵀ + tb)` from the
    /// projected image features `proj`, the label features `fz` and the
    /// time row `tb = f(t)·W1_tᵀ + b1`, then fc2 and fc3.
    pub(crate) fn fusion(&self, proj: &Tensor, fz: &Tensor, tb: &Tensor) -> Result<[Tensor; 3]> {
        let mut h1 = proj.clone();
        self.w1_z.product_into(&mut h1, true, fz)?;
        ops::bias_relu_rows(&mut h1, tb)?;
        let h2 = self.fc2.apply(&h1)?;
        let logits = self.fc3.apply(&h2)?;
        Ok([h1, h2, logits])
    }

    /// The frozen FC label layer (`None` for the prototype conv path).
    pub(crate) fn label(&self) -> Option<&FrozenLinear> {
        self.label.as_ref()
    }
}

/// The per-step layers of a cached evaluation ([`CtNet::cached_head`]):
/// frozen copies of the label, fusion and output layers ([`FrozenLinear`]; the same
/// numbers as the layers themselves on the step shapes), the same layers
/// packed for the fused CPU kernel when built by
/// [`CtNet::fused_cached_head`] on a host that has it ([`PackedMlp`]), and
/// the time path, borrowed.
#[derive(Clone, Debug)]
pub struct CachedHead<'a> {
    frozen: FrozenHead,
    fused: Option<PackedMlp>,
    time_fc: &'a Linear,
    b1: &'a Tensor,
}

impl CachedHead<'_> {
    /// [`CtNet::forward_cached`]'s logits at `(z, t)` for the FC label path:
    /// `fc3(fc2(ReLU(P + f(z)·W1_zᵀ + (f(t)·W1_tᵀ + b1))))` with
    /// `f(z) = ReLU(z·W_labelᵀ + b_label)` (evaluation mode; the time
    /// features are one row). A head from [`CtNet::fused_cached_head`], on
    /// a host with the fused kernel ([`PackedMlp`]), runs the four layers
    /// block by block of rows in one pass: the same numbers as the
    /// per-layer products to f32 rounding, the same bits on some row
    /// counts (`fused_and_per_layer_steps_agree`).
    pub fn logits(&self, cache: &ImageCache, z: &Tensor, t: f64) -> Result<Tensor> {
        let label = self.frozen.label().ok_or_else(|| crate::Error::Config {
            what: "a shared cached evaluation needs the FC label path (not prototype)".into(),
        })?;
        match &self.fused {
            Some(fused) if z.device().is_cpu() => self.fused_logits(fused, cache, z, t, None),
            _ => self.fusion(cache, &label.apply(z)?, t),
        }
    }

    /// [`CachedHead::logits`] for one step of a run over the same rows
    /// (inference's 1000 steps): with the fused kernel, the label layer's
    /// ReLU is folded into `W1_z` row by row ([`PackedMlp::forward_folded`]),
    /// `trail` carrying each row's ReLU pattern and
    /// `M̃ = W1_z·D·[W_label | b_label]` from one step to the next, so a
    /// step costs `d + 1` multiply-adds per `W1_z` output instead of 256.
    /// The same numbers as [`CachedHead::logits`] to f32 rounding (each
    /// row's bits depend on its own steps only); without the fused kernel,
    /// exactly [`CachedHead::logits`]. Pass a fresh `FoldedRows::default()`
    /// per run and the same rows at every step.
    pub fn logits_along(
        &self,
        trail: &mut FoldedRows,
        cache: &ImageCache,
        z: &Tensor,
        t: f64,
    ) -> Result<Tensor> {
        match &self.fused {
            Some(fused) if z.device().is_cpu() => {
                self.fused_logits(fused, cache, z, t, Some(trail))
            }
            _ => self.logits(cache, z, t),
        }
    }

    /// The four per-step layers through the fused kernel (`fused` exists
    /// for the FC label path only), folded along `trail` when given: the
    /// image projection `P` and the step's time row enter `W1_z`'s
    /// pre-activation as its addend.
    fn fused_logits(
        &self,
        fused: &PackedMlp,
        cache: &ImageCache,
        z: &Tensor,
        t: f64,
        trail: Option<&mut FoldedRows>,
    ) -> Result<Tensor> {
        let tb = self.time_row(cache, z, t)?;
        let addend = Some(LayerAddend {
            layer: 1,
            rows: &cache.proj,
            bias: &tb,
        });
        Ok(match trail {
            Some(trail) => fused.forward_folded(trail, z, addend)?,
            None => fused.forward(z, addend)?,
        })
    }

    /// `fc3(fc2(ReLU(P + f(z)·W1_zᵀ + (f(t)·W1_tᵀ + b1))))` from the label
    /// features `fz`, one product per layer.
    fn fusion(&self, cache: &ImageCache, fz: &Tensor, t: f64) -> Result<Tensor> {
        let tb = self.time_row(cache, fz, t)?;
        let [_, _, logits] = self.frozen.fusion(&cache.proj, fz, &tb)?;
        Ok(logits)
    }

    /// The step's time row `f(t)·W1_tᵀ + b1` (`[256]`, on `like`'s device).
    fn time_row(&self, cache: &ImageCache, like: &Tensor, t: f64) -> Result<Tensor> {
        let tt = Tensor::from_vec(vec![t], &[1])?
            .to_dtype(like.dtype())
            .to_device(&like.device())?;
        let ft = self
            .time_fc
            .apply(&ops::time_embedding(&tt, TIME_EMBED_DIM)?)?;
        let mut tb = ops::matmul(&ft, Transpose::No, &cache.w_time, Transpose::Yes)?;
        ops::add_bias_rows(&mut tb, self.b1)?;
        Ok(tb.reshape(&[256])?)
    }
}

/// What the image path leaves for the per-step layers (docs/DECISIONS.md § 17): the
/// image features already projected by the image block of the first fusion
/// layer, `P = f(x)·W1[:, 0:256]ᵀ`, and that layer's other two blocks.
#[derive(Clone, Debug)]
pub struct ImageCache {
    proj: Tensor,
    w_label: Tensor,
    w_time: Tensor,
}

impl ImageCache {
    /// Number of images cached.
    pub fn len(&self) -> usize {
        self.proj.dim(0)
    }

    /// Whether no image is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache of images `rows` (in order) only.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Result<ImageCache> {
        Ok(ImageCache {
            proj: ops::gather_rows(&self.proj, &rows.collect::<Vec<_>>())?,
            w_label: self.w_label.clone(),
            w_time: self.w_time.clone(),
        })
    }
}

impl CtNet {
    /// The network for images `dims` (conv stack `stack`), `classes`
    /// classes and embedding dimension `d` (the prototype conv label path
    /// when `d = C·H·W`), parameters drawn from `(seed, "net.…")`.
    pub fn new(
        dims: ImageDims,
        stack: ConvStack,
        classes: usize,
        d: usize,
        seed: u64,
    ) -> Result<Self> {
        let img = image_path(
            dims,
            stack,
            false,
            false,
            seed,
            "net.img",
            mix_stream(0xC7, 1),
        )?;
        let label = if d == dims.0 * dims.1 * dims.2 {
            LabelPath::Conv(
                image_path(
                    dims,
                    stack,
                    false,
                    true,
                    seed,
                    "net.label",
                    mix_stream(0xC7, 2),
                )?,
                dims,
            )
        } else {
            LabelPath::Fc(Linear::new(d, 256, seed, "net.label.fc").with_relu())
        };
        Ok(CtNet {
            img,
            label,
            temb: SinusoidalTimeEmbedding::new(TIME_EMBED_DIM),
            time_fc: Linear::new(TIME_EMBED_DIM, 256, seed, "net.time.fc").with_relu(),
            fc1: Linear::new(768, 256, seed, "net.head.fc1").with_relu(),
            fc2: Linear::new(256, 128, seed, "net.head.fc2").with_relu(),
            fc3: Linear::new(128, classes, seed, "net.head.fc3"),
        })
    }

    fn label_forward(&mut self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        Ok(match &mut self.label {
            LabelPath::Fc(fc) => fc.forward(z, mode)?,
            LabelPath::Conv(path, (c, h, w)) => {
                let zi = z.clone().reshape(&[z.dim(0), *c, *h, *w])?;
                path.forward(&zi, mode)?
            }
        })
    }

    /// The time path on `like`'s device and dtype; the times are host values
    /// (drawn on the host, or the sampler's grid) and travel as one `[B]` tensor.
    fn time_features(&mut self, t: &[f64], mode: Mode, like: &Tensor) -> Result<Tensor> {
        let tt = Tensor::from_vec(t.to_vec(), &[t.len()])?
            .to_dtype(like.dtype())
            .to_device(&like.device())?;
        let e = self.temb.forward(&tt, Mode::Eval)?;
        Ok(self.time_fc.forward(&e, mode)?)
    }

    /// Logits `[B, m]` from images `x: [B, C, H, W]`, latents `z: [B, d]` and
    /// one time per row (the full network, as in training).
    pub fn forward(&mut self, x: &Tensor, z: &Tensor, t: &[f64], mode: Mode) -> Result<Tensor> {
        let fx = self.img.forward(x, mode)?;
        let fz = self.label_forward(z, mode)?;
        let ft = self.time_features(t, mode, z)?;
        let cat = ops::concat_cols(&[&fx, &fz, &ft])?;
        let h1 = self.fc1.forward(&cat, mode)?;
        let h2 = self.fc2.forward(&h1, mode)?;
        Ok(self.fc3.forward(&h2, mode)?)
    }

    /// Backward from `∂L/∂logits` after a training [`CtNet::forward`]:
    /// accumulates every parameter gradient and returns `∂L/∂z` (`[B, d]`).
    pub fn backward(&mut self, dlogits: &Tensor) -> Result<Tensor> {
        let d2 = self.fc3.backward(dlogits)?;
        let d1 = self.fc2.backward(&d2)?;
        let dcat = self.fc1.backward(&d1)?;
        let parts = ops::split_cols(&dcat, &[256, 256, 256])?;
        self.img.backward(&parts[0])?;
        self.time_fc.backward(&parts[2])?;
        let dz = match &mut self.label {
            LabelPath::Fc(fc) => fc.backward(&parts[1])?,
            LabelPath::Conv(path, _) => {
                let dz = path.backward(&parts[1])?;
                let b = dz.dim(0);
                let rest = dz.numel() / b.max(1);
                dz.reshape(&[b, rest])?
            }
        };
        Ok(dz)
    }

    /// Run the image path once (evaluation mode) and keep what every later
    /// step needs (docs/DECISIONS.md § 17).
    pub fn prepare(&mut self, x: &Tensor) -> Result<ImageCache> {
        let fx = self.img.forward(x, Mode::Eval)?;
        let w = ops::split_cols(&self.fc1.weight, &[256, 256, 256])?;
        let proj = ops::matmul(&fx, Transpose::No, &w[0], Transpose::Yes)?;
        Ok(ImageCache {
            proj,
            w_label: w[1].clone(),
            w_time: w[2].clone(),
        })
    }

    /// Evaluation-mode logits from a cached image path: only the label path,
    /// the time path (one row, shared by the batch) and the fusion MLP run.
    /// `fc1(concat[f(x), f(z), f(t)]) = P + f(z)·W1_zᵀ + (f(t)·W1_tᵀ + b1)`.
    /// For the FC label path this builds a [`CtNet::fused_cached_head`] for
    /// the one call and evaluates it unfolded ([`CachedHead::logits`]):
    /// the same numbers as inference's steps to f32 rounding (those fold
    /// the label layer, [`CachedHead::logits_along`]). Loops over many
    /// steps should hold a head instead.
    pub fn forward_cached(&mut self, cache: &ImageCache, z: &Tensor, t: f64) -> Result<Tensor> {
        if let Some(head) = self.fused_cached_head()? {
            return head.logits(cache, z, t);
        }
        let fz = self.label_forward(z, Mode::Eval)?;
        self.head_parts(None)?.fusion(cache, &fz, t)
    }

    /// The layers that run at every cached evaluation, as frozen copies of
    /// the current weights: `Some` for the FC label path
    /// ([`CachedHead::logits`] then needs only `&self`, so several threads
    /// can evaluate one network at once), `None` for the prototype conv
    /// label path, whose layers keep state.
    pub fn cached_head(&self) -> Result<Option<CachedHead<'_>>> {
        match &self.label {
            LabelPath::Fc(fc) => Ok(Some(self.head_parts(Some(fc.frozen()?))?)),
            LabelPath::Conv(..) => Ok(None),
        }
    }

    /// [`CtNet::cached_head`], with the per-step layers also packed for the
    /// fused CPU kernel where it runs ([`PackedMlp`]): for many evaluations
    /// with the same weights (inference's steps), as packing copies the
    /// weights once.
    pub fn fused_cached_head(&self) -> Result<Option<CachedHead<'_>>> {
        let LabelPath::Fc(fc) = &self.label else {
            return Ok(None);
        };
        let mut head = self.head_parts(Some(fc.frozen()?))?;
        head.fused = self.packed_head(fc)?;
        Ok(Some(head))
    }

    fn head_parts(&self, label: Option<FrozenLinear>) -> Result<CachedHead<'_>> {
        Ok(CachedHead {
            frozen: self.frozen_head(label)?,
            fused: None,
            time_fc: &self.time_fc,
            b1: &self.fc1.bias,
        })
    }

    /// The FC label layer, `W1_z` (no bias of its own: `b1` comes with the
    /// time row), fc2 and fc3 packed for [`PackedMlp`]; `None` where the
    /// fused kernel does not run (a GPU, `f64`, a host without it).
    fn packed_head(&self, label: &Linear) -> Result<Option<PackedMlp>> {
        let w1 = ops::split_cols(&self.fc1.weight, &[256, 256, 256])?;
        fn layer(l: &Linear) -> MlpLayer<'_> {
            MlpLayer {
                weight: &l.weight,
                bias: Some(&l.bias),
                relu: l.has_relu(),
            }
        }
        let w1_z = MlpLayer {
            weight: &w1[1],
            bias: None,
            relu: true,
        };
        Ok(PackedMlp::pack(&[
            layer(label),
            w1_z,
            layer(&self.fc2),
            layer(&self.fc3),
        ])?)
    }

    /// Frozen copies of the current label (when given), `W1_z`, fc2 and
    /// fc3 weights.
    pub(crate) fn frozen_head(&self, label: Option<FrozenLinear>) -> Result<FrozenHead> {
        let w1 = ops::split_cols(&self.fc1.weight, &[256, 256, 256])?;
        Ok(FrozenHead {
            label,
            w1_z: FrozenLinear::from_parts(w1[1].clone(), self.fc1.bias.clone(), true)?,
            fc2: self.fc2.frozen()?,
            fc3: self.fc3.frozen()?,
        })
    }

    /// One step of inference re-running the image path for this call (the
    /// uncached reference of docs/DECISIONS.md § 17): the same computation
    /// as [`CachedHead::logits_along`] on a [`CtNet::fused_cached_head`]
    /// with `trail` (packed for this call), or [`CtNet::forward_cached`]
    /// for the prototype label path.
    pub fn forward_uncached(
        &mut self,
        x: &Tensor,
        z: &Tensor,
        t: f64,
        trail: &mut FoldedRows,
    ) -> Result<Tensor> {
        let cache = self.prepare(x)?;
        match self.fused_cached_head()? {
            Some(head) => head.logits_along(trail, &cache, z, t),
            None => self.forward_cached(&cache, z, t),
        }
    }

    /// Move every parameter, gradient and buffer to `device`.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        self.img.to_device(device)?;
        match &mut self.label {
            LabelPath::Fc(fc) => fc.to_device(device)?,
            LabelPath::Conv(path, _) => path.to_device(device)?,
        }
        for l in [
            &mut self.time_fc,
            &mut self.fc1,
            &mut self.fc2,
            &mut self.fc3,
        ] {
            l.to_device(device)?;
        }
        Ok(())
    }

    /// Re-key the dropout masks for step `key`.
    pub fn set_rng_key(&mut self, key: u64) {
        self.img.set_rng_key(key);
        if let LabelPath::Conv(p, _) = &mut self.label {
            p.set_rng_key(key);
        }
    }

    /// Parameters, named `img.…`, `label.…`, `time.fc.…`, `head.fc{1,2,3}.…`.
    pub fn params(&mut self) -> Vec<ParamMut<'_>> {
        let mut p = prefixed("img", self.img.params());
        match &mut self.label {
            LabelPath::Fc(fc) => p.extend(prefixed("label.fc", fc.params())),
            LabelPath::Conv(path, _) => p.extend(prefixed("label", path.params())),
        }
        p.extend(prefixed("time.fc", self.time_fc.params()));
        p.extend(prefixed("head.fc1", self.fc1.params()));
        p.extend(prefixed("head.fc2", self.fc2.params()));
        p.extend(prefixed("head.fc3", self.fc3.params()));
        p
    }

    /// Zero every gradient.
    pub fn zero_grad(&mut self) {
        for p in self.params() {
            p.grad.fill(0.0);
        }
    }

    /// Trainable scalars (the CT column of Table 5).
    pub fn num_params(&mut self) -> usize {
        self.params().iter().map(|p| p.value.numel()).sum()
    }
}

/// `{prefix}.img.…`, `{prefix}.label.…`, `{prefix}.time.fc.…`,
/// `{prefix}.head.fc{1,2,3}.…`: the names of [`CtNet::params`] (no path has
/// batch-norm statistics).
impl StateDict for CtNet {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        self.img.visit_state(&join(prefix, "img"), v)?;
        match &mut self.label {
            LabelPath::Fc(fc) => fc.visit_state(&join(prefix, "label.fc"), v)?,
            LabelPath::Conv(path, _) => path.visit_state(&join(prefix, "label"), v)?,
        }
        self.time_fc.visit_state(&join(prefix, "time.fc"), v)?;
        self.fc1.visit_state(&join(prefix, "head.fc1"), v)?;
        self.fc2.visit_state(&join(prefix, "head.fc2"), v)?;
        self.fc3.visit_state(&join(prefix, "head.fc3"), v)
    }
}
