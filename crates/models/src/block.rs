//! The NoProp-DT denoising block `û_θt(z_{t−1}, x)` (docs/DECISIONS.md, note G.1).

use noprop_nn::layers::{
    mix_stream, BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential,
};
use noprop_nn::state::{join, StateDict, StateVisitor};
use noprop_nn::{prefixed, Mode, Module, ParamMut};
use noprop_tensor::{ops, Tensor};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Image shape `(C, H, W)`.
pub type ImageDims = (usize, usize, usize);

/// The conv stack of the image path (paper v2, Fig. 5 and its caption).
///
/// `Three` is the stack of MNIST and CIFAR: conv 3×3·32 → ReLU → maxpool →
/// dropout; conv 3×3·64 → ReLU → dropout; conv 3×3·128 → ReLU → maxpool →
/// dropout. `Four` is v2's Tiny ImageNet stack: "an additional
/// convolutional layer with 256 output channels, followed by ReLU, 2×2 max
/// pooling, and dropout (p = 0.2), is inserted before concatenation" —
/// here after the third conv, before flatten → FC(256), with a 3×3 kernel
/// and padding 0 like the others (the caption gives neither; see
/// docs/REPRODUCTION.md, Table 5, for what the parameter count says).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConvStack {
    /// Three convs (32, 64, 128 channels): MNIST, CIFAR.
    #[default]
    Three,
    /// The three, then conv 3×3·256 → ReLU → 2×2 max-pool → dropout 0.2
    /// (Tiny ImageNet, v2).
    Four,
}

impl ConvStack {
    /// The paper's stack for images of `dims`: [`ConvStack::Four`] for
    /// images of at least 64×64 (Tiny ImageNet's), [`ConvStack::Three`]
    /// otherwise.
    pub fn paper(dims: ImageDims) -> Self {
        if dims.1.min(dims.2) >= 64 {
            ConvStack::Four
        } else {
            ConvStack::Three
        }
    }

    /// Whether this is [`ConvStack::Three`] (the stack a configuration
    /// leaves unsaid).
    pub fn is_three(&self) -> bool {
        *self == ConvStack::Three
    }

    /// Output channels of the last conv (128 or 256).
    pub fn channels(self) -> usize {
        match self {
            ConvStack::Three => 128,
            ConvStack::Four => 256,
        }
    }

    /// Spatial size after the stack (3×3 pad 0 convs, 2×2/2 floor pools):
    /// `H → H−2 → ⌊·/2⌋ → −2 → −2 → ⌊·/2⌋` (MNIST 28 → 4, CIFAR 32 → 5),
    /// and for `Four` then `→ −2 → ⌊·/2⌋` (Tiny ImageNet 64 → 13 → 5).
    pub fn out_side(self, h: usize) -> Result<usize> {
        let three = h
            .checked_sub(2)
            .map(|s| s / 2)
            .and_then(|s| s.checked_sub(4))
            .map(|s| s / 2);
        let s = match self {
            ConvStack::Three => three,
            ConvStack::Four => three.and_then(|s| s.checked_sub(2)).map(|s| s / 2),
        };
        match s {
            Some(s) if s > 0 => Ok(s),
            _ => Err(Error::Config {
                what: format!(
                    "images of side {h} are too small for the {} conv stack (need ≥ {})",
                    match self {
                        ConvStack::Three => "three-layer",
                        ConvStack::Four => "four-layer",
                    },
                    match self {
                        ConvStack::Three => 14,
                        ConvStack::Four => 26,
                    }
                ),
            }),
        }
    }
}

/// Spatial size after the three-conv stack ([`ConvStack::out_side`] of
/// [`ConvStack::Three`]): MNIST 28 → 4, CIFAR 32 → 5.
pub fn conv_stack_out(h: usize) -> Result<usize> {
    ConvStack::Three.out_side(h)
}

/// The paper's image path, padding 0, dropout 0.2 (docs/DECISIONS.md § 7):
/// the conv stack `stack` ([`ConvStack`]), flatten → FC(256), then
/// batch-norm (`dt`, no ReLU) or ReLU (CT/FM).
pub fn image_path(
    dims: ImageDims,
    stack: ConvStack,
    dt: bool,
    input_grad: bool,
    seed: u64,
    name: &str,
    dropout_stream: u64,
) -> Result<Sequential> {
    let (c, h, w) = dims;
    let (sh, sw) = (stack.out_side(h)?, stack.out_side(w)?);
    let flat = stack.channels() * sh * sw;
    let n = |l: &str| format!("{name}.{l}");
    let mut conv1 = Conv2d::new(c, 32, 3, 0, seed, &n("conv1")).with_relu();
    if !input_grad {
        conv1 = conv1.without_input_grad();
    }
    let drop = |i: u64| Dropout::new(0.2, seed, mix_stream(dropout_stream, i));
    let mut s = Sequential::new()
        .push("conv1", conv1)
        .push("pool1", MaxPool2d::new())
        .push("drop1", drop(1))
        .push(
            "conv2",
            Conv2d::new(32, 64, 3, 0, seed, &n("conv2")).with_relu(),
        )
        .push("drop2", drop(2))
        .push(
            "conv3",
            Conv2d::new(64, 128, 3, 0, seed, &n("conv3")).with_relu(),
        )
        .push("pool3", MaxPool2d::new())
        .push("drop3", drop(3));
    if stack == ConvStack::Four {
        s = s
            .push(
                "conv4",
                Conv2d::new(128, 256, 3, 0, seed, &n("conv4")).with_relu(),
            )
            .push("pool4", MaxPool2d::new())
            .push("drop4", drop(4));
    }
    s = s.push("flatten", Flatten::new());
    if dt {
        s = s
            .push("fc", Linear::new(flat, 256, seed, &n("fc")))
            .push("bn", BatchNorm::new(256));
    } else {
        s = s.push("fc", Linear::new(flat, 256, seed, &n("fc")).with_relu());
    }
    Ok(s)
}

/// The noised-label path of a DT block when `d ≠` image size:
/// `h1 = ReLU(BN(FC(z)))`, `h2 = BN(FC(ReLU(BN(FC(h1)))))`, output `h1 + h2`.
struct LabelMlp {
    first: Sequential,
    inner: Sequential,
}

impl LabelMlp {
    fn new(d: usize, seed: u64, name: &str) -> Self {
        let n = |l: &str| format!("{name}.{l}");
        LabelMlp {
            first: Sequential::new()
                .push("fc1", Linear::new(d, 256, seed, &n("fc1")))
                .push("bn1", BatchNorm::new(256))
                .push("relu1", ReLU::new()),
            inner: Sequential::new()
                .push("fc2", Linear::new(256, 256, seed, &n("fc2")))
                .push("bn2", BatchNorm::new(256))
                .push("relu2", ReLU::new())
                .push("fc3", Linear::new(256, 256, seed, &n("fc3")))
                .push("bn3", BatchNorm::new(256)),
        }
    }
}

impl Module for LabelMlp {
    fn forward(&mut self, z: &Tensor, mode: Mode) -> noprop_nn::Result<Tensor> {
        let h1 = self.first.forward(z, mode)?;
        let h2 = self.inner.forward(&h1, mode)?;
        Ok(ops::add(&h1, &h2)?)
    }

    fn backward(&mut self, dy: &Tensor) -> noprop_nn::Result<Tensor> {
        let mut dh1 = self.inner.backward(dy)?;
        ops::add_assign(&mut dh1, dy)?;
        self.first.backward(&dh1)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        let mut p = self.first.params();
        p.extend(self.inner.params());
        p
    }

    fn buffers(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut b = self.first.buffers();
        b.extend(self.inner.buffers());
        b
    }
}

/// One NoProp-DT block `û_θt(z_{t−1}, x)`; it outputs the `m` logits, and
/// the caller forms `û = softmax(logits)·W_Embed`.
///
/// * image path: [`image_path`] with batch-norm;
/// * label path: the residual MLP (`d ≠` image size) or, for the prototype
///   embedding (`d` = image size), `z` reshaped to `C×H×W` through its own
///   copy of the image path;
/// * fusion head: concat (512) → FC 256 → BN → ReLU → FC 128 → BN → ReLU → FC m.
pub struct DenoiseBlock {
    img: Sequential,
    label: Box<dyn Module>,
    head: Sequential,
    z_image: Option<ImageDims>,
    classes: usize,
}

impl std::fmt::Debug for DenoiseBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenoiseBlock")
            .field("img", &self.img)
            .field("head", &self.head)
            .field("prototype_path", &self.z_image.is_some())
            .finish()
    }
}

impl DenoiseBlock {
    /// Block `t` for images `dims`, `classes` classes and embedding dimension
    /// `d`; when `d = C·H·W` the label path is a conv path (prototype case).
    /// Parameters are drawn from `(seed, "block{t}.…")`. `z_grad`: whether
    /// `backward` must return `∂L/∂z` (only needed for a learned embedding).
    /// `stack`: the image path's conv stack (also the prototype label path's).
    pub fn new(
        dims: ImageDims,
        stack: ConvStack,
        classes: usize,
        d: usize,
        t: usize,
        seed: u64,
        z_grad: bool,
    ) -> Result<Self> {
        let name = format!("block{t}");
        let img_size = dims.0 * dims.1 * dims.2;
        let img = image_path(
            dims,
            stack,
            true,
            false,
            seed,
            &format!("{name}.img"),
            mix_stream(t as u64, 1),
        )?;
        let (label, z_image): (Box<dyn Module>, _) = if d == img_size {
            let p = image_path(
                dims,
                stack,
                true,
                z_grad,
                seed,
                &format!("{name}.label"),
                mix_stream(t as u64, 2),
            )?;
            (Box::new(p), Some(dims))
        } else {
            (
                Box::new(LabelMlp::new(d, seed, &format!("{name}.label"))),
                None,
            )
        };
        let n = |l: &str| format!("{name}.head.{l}");
        let head = Sequential::new()
            .push("fc1", Linear::new(512, 256, seed, &n("fc1")))
            .push("bn1", BatchNorm::new(256))
            .push("relu1", ReLU::new())
            .push("fc2", Linear::new(256, 128, seed, &n("fc2")))
            .push("bn2", BatchNorm::new(128))
            .push("relu2", ReLU::new())
            .push("fc3", Linear::new(128, classes, seed, &n("fc3")));
        Ok(DenoiseBlock {
            img,
            label,
            head,
            z_image,
            classes,
        })
    }

    /// Logits `[B, m]` from images `x: [B, C, H, W]` and latents `z: [B, d]`.
    pub fn forward(&mut self, x: &Tensor, z: &Tensor, mode: Mode) -> Result<Tensor> {
        let fx = self.forward_image(x, mode)?;
        self.forward_head(&fx, z, mode)
    }

    /// The image path alone, `f(x)` (`[B, 256]`). It does not read `z`, so
    /// the back-propagation baseline runs its T blocks' image paths side by
    /// side before the chain through the latents.
    pub fn forward_image(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        Ok(self.img.forward(x, mode)?)
    }

    /// Logits from image features `fx` ([`DenoiseBlock::forward_image`]) and
    /// latents `z`: the label path, the concatenation and the fusion head.
    pub fn forward_head(&mut self, fx: &Tensor, z: &Tensor, mode: Mode) -> Result<Tensor> {
        let fz = match self.z_image {
            Some((c, h, w)) => {
                let zi = z.clone().reshape(&[z.dim(0), c, h, w])?;
                self.label.forward(&zi, mode)?
            }
            None => self.label.forward(z, mode)?,
        };
        let cat = ops::concat_cols(&[fx, &fz])?;
        Ok(self.head.forward(&cat, mode)?)
    }

    /// Backward from `∂L/∂logits`; accumulates parameter gradients and returns
    /// `∂L/∂z` (`[B, d]`, or an empty tensor when built without `z_grad`).
    pub fn backward(&mut self, dlogits: &Tensor) -> Result<Tensor> {
        let (dfx, dz) = self.backward_head(dlogits)?;
        self.backward_image(&dfx)?;
        Ok(dz)
    }

    /// Backward through the fusion head and the label path after a training
    /// [`DenoiseBlock::forward_head`]: accumulates their gradients and returns
    /// `(∂L/∂f(x), ∂L/∂z)`; [`DenoiseBlock::backward_image`] finishes the block.
    pub fn backward_head(&mut self, dlogits: &Tensor) -> Result<(Tensor, Tensor)> {
        let dcat = self.head.backward(dlogits)?;
        let mut parts = ops::split_cols(&dcat, &[256, 256])?;
        let dz = self.label.backward(&parts[1])?;
        let dz = if dz.numel() > 0 && dz.rank() == 4 {
            let b = dz.dim(0);
            let rest = dz.numel() / b.max(1);
            dz.reshape(&[b, rest])?
        } else {
            dz
        };
        Ok((parts.swap_remove(0), dz))
    }

    /// Backward through the image path from `∂L/∂f(x)` (after a training
    /// [`DenoiseBlock::forward_image`]): accumulates its gradients.
    pub fn backward_image(&mut self, dfx: &Tensor) -> Result<()> {
        self.img.backward(dfx)?;
        Ok(())
    }

    /// Move every parameter, gradient and running statistic to `device`.
    pub fn to_device(&mut self, device: &noprop_tensor::Device) -> Result<()> {
        self.img.to_device(device)?;
        self.label.to_device(device)?;
        self.head.to_device(device)?;
        Ok(())
    }

    /// Number of classes (logits).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Re-key the dropout masks for step `key` (see [`Module::set_rng_key`]).
    pub fn set_rng_key(&mut self, key: u64) {
        self.img.set_rng_key(key);
        self.label.set_rng_key(key);
    }

    /// Parameters, named `img.…`, `label.…`, `head.…`.
    pub fn params(&mut self) -> Vec<ParamMut<'_>> {
        let mut p = prefixed("img", self.img.params());
        p.extend(prefixed("label", self.label.params()));
        p.extend(prefixed("head", self.head.params()));
        p
    }

    /// Batch-norm running statistics, named like the parameters.
    pub fn buffers(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut b: Vec<(String, &mut Tensor)> = self
            .img
            .buffers()
            .into_iter()
            .map(|(n, t)| (format!("img.{n}"), t))
            .collect();
        b.extend(
            self.label
                .buffers()
                .into_iter()
                .map(|(n, t)| (format!("label.{n}"), t)),
        );
        b.extend(
            self.head
                .buffers()
                .into_iter()
                .map(|(n, t)| (format!("head.{n}"), t)),
        );
        b
    }

    /// Zero every gradient.
    pub fn zero_grad(&mut self) {
        for p in self.params() {
            p.grad.fill(0.0);
        }
    }

    /// Trainable scalars in this block (the quantity of Table 5).
    pub fn num_params(&mut self) -> usize {
        self.params().iter().map(|p| p.value.numel()).sum()
    }
}

/// `{prefix}.img.…`, `{prefix}.label.…`, `{prefix}.head.…`: each path's
/// parameters, then its batch-norm running statistics.
impl StateDict for DenoiseBlock {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        self.img.visit_state(&join(prefix, "img"), v)?;
        self.label.visit_state(&join(prefix, "label"), v)?;
        self.head.visit_state(&join(prefix, "head"), v)
    }
}
