//! The configuration of NoProp-DT: loop order, gradient routes into
//! `W_Embed` and the paper's settings (Table 4).

use serde::{Deserialize, Serialize};

use crate::block::{ConvStack, ImageDims};
use crate::classifier::ClassifierKind;
use crate::embedding::EmbeddingKind;

/// The order of the training loops (docs/DECISIONS.md § 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Algorithm 1: for t = 1…T, a full pass over the data training block t.
    Paper,
    /// Each mini-batch once; for t = 1…T block t's step and one shared step.
    Batch,
}

/// Which uses of `W_Embed` pass gradients to it (docs/DECISIONS.md § 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedGrad {
    /// Target `u_y`, noisy input (reparameterised), block output, KL and classifier input.
    All,
    /// Only the block output `û = softmax(logits)·W_Embed`.
    OutputOnly,
}

/// Everything that defines a NoProp-DT model and its training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DtConfig {
    /// Image `(C, H, W)`.
    pub image: ImageDims,
    /// Number of classes `m`.
    pub classes: usize,
    /// The image path's conv stack (Tiny ImageNet's has a fourth conv, v2).
    /// Written only when it is not three convs, so checkpoints of the other
    /// datasets keep their format, and older checkpoints read as three convs.
    #[serde(default, skip_serializing_if = "ConvStack::is_three")]
    pub conv_stack: ConvStack,
    /// The class embedding.
    pub embedding: EmbeddingKind,
    /// Number of blocks `T` (10).
    pub steps: usize,
    /// η, the weight of the L2 terms (0.1 for DT).
    pub eta: f64,
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Weight decay, decoupled (AdamW, 1e-3).
    pub weight_decay: f64,
    /// The output classifier.
    pub classifier: ClassifierKind,
    /// Gradient routes into `W_Embed`.
    pub embed_grad: EmbedGrad,
    /// Loop order.
    pub order: Order,
    /// Run the T block updates of a mini-batch concurrently when the
    /// embedding is fixed (bit-identical to sequential).
    pub concurrent_blocks: bool,
    /// Master seed.
    pub seed: u64,
}

impl DtConfig {
    /// The paper's settings (Table 4) for images `image`, `classes` classes.
    pub fn paper(image: ImageDims, classes: usize, embedding: EmbeddingKind, seed: u64) -> Self {
        DtConfig {
            image,
            classes,
            conv_stack: ConvStack::paper(image),
            embedding,
            steps: 10,
            eta: 0.1,
            lr: 1e-3,
            weight_decay: 1e-3,
            classifier: ClassifierKind::Softmax,
            embed_grad: EmbedGrad::All,
            order: Order::Batch,
            concurrent_blocks: true,
            seed,
        }
    }

    /// The embedding dimension `d`.
    pub fn embed_dim(&self) -> usize {
        self.embedding.dim_for(self.image, self.classes)
    }
}
