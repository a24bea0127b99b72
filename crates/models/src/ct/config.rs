//! The configuration of NoProp-CT/FM: the method, the inference sampler and
//! the paper's settings (Table 4).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::block::{ConvStack, ImageDims};
use crate::embedding::EmbeddingKind;
use crate::{Error, Result};

/// Which continuous-time method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContMethod {
    /// NoProp-CT: diffusion with a learnable schedule (Eq. 9).
    Ct,
    /// NoProp-FM: flow matching (Eq. 11, plus Eq. 13 with a learned embedding).
    Fm,
}

impl ContMethod {
    /// `noprop-ct` or `noprop-fm`.
    pub fn name(self) -> &'static str {
        match self {
            ContMethod::Ct => "noprop-ct",
            ContMethod::Fm => "noprop-fm",
        }
    }

    /// The default sampler (docs/DECISIONS.md §§ 10 and 11): ancestral for CT, Euler for FM.
    pub fn default_sampler(self) -> Sampler {
        match self {
            ContMethod::Ct => Sampler::Ancestral,
            ContMethod::Fm => Sampler::Euler,
        }
    }
}

/// How inference simulates `z_0 → z_1` (docs/DECISIONS.md §§ 10 and 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampler {
    /// CT only: the discretised diffusion of docs/DECISIONS.md, note D (i).
    Ancestral,
    /// Euler steps of the ODE (CT: docs/DECISIONS.md, note D (ii); FM: `dz/dt = v̂`).
    Euler,
    /// Heun steps of the same ODE.
    Heun,
}

impl FromStr for Sampler {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ancestral" => Ok(Sampler::Ancestral),
            "euler" => Ok(Sampler::Euler),
            "heun" => Ok(Sampler::Heun),
            _ => Err(Error::Config {
                what: format!("unknown sampler `{s}` (ancestral, euler, heun)"),
            }),
        }
    }
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sampler::Ancestral => "ancestral",
            Sampler::Euler => "euler",
            Sampler::Heun => "heun",
        })
    }
}

/// Everything that defines a NoProp-CT/FM model and its training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContConfig {
    /// CT or FM.
    pub method: ContMethod,
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
    /// η of Eq. 9 (CT; 1 in Table 4).
    pub eta: f64,
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Weight decay, coupled L2 as in `torch.optim.Adam` (1e-3).
    pub weight_decay: f64,
    /// σ of the FM path, Eq. 10 (docs/DECISIONS.md § 11: 0).
    pub fm_sigma: f64,
    /// Add the anchor cross-entropy of Eq. 13 (FM; on with a learned embedding).
    pub anchor_ce: bool,
    /// Master seed.
    pub seed: u64,
}

impl ContConfig {
    /// The paper's settings (Table 4) for `method`.
    pub fn paper(
        method: ContMethod,
        image: ImageDims,
        classes: usize,
        embedding: EmbeddingKind,
        seed: u64,
    ) -> Self {
        ContConfig {
            method,
            image,
            classes,
            conv_stack: ConvStack::paper(image),
            embedding,
            eta: 1.0,
            lr: 1e-3,
            weight_decay: 1e-3,
            fm_sigma: 0.0,
            anchor_ce: method == ContMethod::Fm && embedding != EmbeddingKind::OneHot,
            seed,
        }
    }

    /// The embedding dimension `d`.
    pub fn embed_dim(&self) -> usize {
        self.embedding.dim_for(self.image, self.classes)
    }
}
