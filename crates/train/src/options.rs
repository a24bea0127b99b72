//! Typed option values shared by the library and the `noprop` CLI.
//!
//! Each value a user can type is an enum here. Those with a closed set of
//! values derive [`clap::ValueEnum`], so `--help` lists them and a typo gets a
//! "did you mean" suggestion from clap; the open-ended ones (`dimN`
//! embeddings, `cuda:N` devices, dataset aliases) parse through
//! [`std::str::FromStr`] and suggest the closest known spelling themselves
//! ([`suggest`]).

use std::fmt;
use std::str::FromStr;

use clap::ValueEnum;
use noprop_baselines::{Activation, CclLoss, RelativeMethod};
use noprop_datasets::DatasetName;
use noprop_models::{ClassifierKind, EmbedGrad, EmbeddingInit, EmbeddingKind, Order, Sampler};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The algorithm to train: NoProp in its three variants, one of the two
/// end-to-end baselines, or one of the back-propagation-free relatives
/// ([`MethodName::RELATIVES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MethodName {
    /// NoProp-DT: T = 10 denoising blocks, each trained on its own (Eq. 8).
    #[value(name = "noprop-dt")]
    NopropDt,
    /// NoProp-CT: one network over continuous time with a learnable noise schedule (Eq. 9).
    #[value(name = "noprop-ct")]
    NopropCt,
    /// NoProp-FM: flow matching (Eqs. 10–13).
    #[value(name = "noprop-fm")]
    NopropFm,
    /// The same T blocks chained by Eqs. 17–19 and trained end to end by back-propagation.
    Backprop,
    /// A neural ODE on the CT network trained with the adjoint method.
    Adjoint,
    /// Relatives: an MLP trained end to end by back-propagation (the matched reference).
    #[value(name = "backprop-mlp")]
    BackpropMlp,
    /// Relatives: Forward-Forward, supervised (Hinton 2022).
    #[value(name = "forward-forward")]
    ForwardForward,
    /// Relatives: Counter-Current Learning (Kao & Hariharan 2024).
    Ccl,
    /// Relatives: Direct Feedback Alignment (Nøkland 2016).
    Dfa,
    /// Relatives: Direct Random Target Projection (Frenkel et al. 2021).
    Drtp,
    /// Relatives: gradient-boosted sequential training (Emami & Martínez-Muñoz 2023).
    #[value(name = "grad-boost")]
    GradBoost,
}

impl MethodName {
    /// Every method, in the order of the paper's Table 1.
    pub const ALL: [MethodName; 5] = [
        MethodName::Backprop,
        MethodName::NopropDt,
        MethodName::Adjoint,
        MethodName::NopropCt,
        MethodName::NopropFm,
    ];

    /// The name used on the command line, in results and in checkpoints.
    pub const fn as_str(self) -> &'static str {
        match self {
            MethodName::NopropDt => "noprop-dt",
            MethodName::NopropCt => "noprop-ct",
            MethodName::NopropFm => "noprop-fm",
            MethodName::Backprop => "backprop",
            MethodName::Adjoint => "adjoint",
            MethodName::BackpropMlp => "backprop-mlp",
            MethodName::ForwardForward => "forward-forward",
            MethodName::Ccl => "ccl",
            MethodName::Dfa => "dfa",
            MethodName::Drtp => "drtp",
            MethodName::GradBoost => "grad-boost",
        }
    }

    /// The back-propagation-free relatives and their matched back-prop MLP
    /// (`noprop_baselines::relatives`), in the order of docs/RELATIVES.md.
    pub const RELATIVES: [MethodName; 6] = [
        MethodName::BackpropMlp,
        MethodName::Ccl,
        MethodName::Dfa,
        MethodName::Drtp,
        MethodName::ForwardForward,
        MethodName::GradBoost,
    ];

    /// The relative this method is, if it is one.
    pub const fn relative(self) -> Option<RelativeMethod> {
        Some(match self {
            MethodName::BackpropMlp => RelativeMethod::BackpropMlp,
            MethodName::ForwardForward => RelativeMethod::ForwardForward,
            MethodName::Ccl => RelativeMethod::Ccl,
            MethodName::Dfa => RelativeMethod::Dfa,
            MethodName::Drtp => RelativeMethod::Drtp,
            MethodName::GradBoost => RelativeMethod::GradBoost,
            _ => return None,
        })
    }

    /// NoProp-CT or NoProp-FM (the continuous-time methods that sample at inference).
    pub const fn is_continuous(self) -> bool {
        matches!(self, MethodName::NopropCt | MethodName::NopropFm)
    }
}

impl fmt::Display for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MethodName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let all: Vec<MethodName> = MethodName::ALL
            .into_iter()
            .chain(MethodName::RELATIVES)
            .collect();
        all.iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|m| m.as_str()).collect();
                unknown("method", s, &names)
            })
    }
}

/// The hidden non-linearity of the relatives' MLPs (`--activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActivationArg {
    /// max(x, 0).
    Relu,
    /// tanh(x).
    Tanh,
    /// x for x > 0, eˣ − 1 otherwise.
    Elu,
}

impl From<ActivationArg> for Activation {
    fn from(a: ActivationArg) -> Self {
        match a {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::Tanh => Activation::Tanh,
            ActivationArg::Elu => Activation::Elu,
        }
    }
}

/// CCL's layer-wise loss (`--ccl-loss`; docs/RELATIVES.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CclLossArg {
    /// The paper's text: each sample's activation against its own target's feedback activation.
    Paper,
    /// The released code: dot products with every class's feedback activation, CE on the output.
    Code,
}

impl From<CclLossArg> for CclLoss {
    fn from(a: CclLossArg) -> Self {
        match a {
            CclLossArg::Paper => CclLoss::Paper,
            CclLossArg::Code => CclLoss::Code,
        }
    }
}

/// The CT/FM inference sampler (`--sampler`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    /// CT only: simulate the discretised diffusion (the default for CT).
    Ancestral,
    /// Euler steps of the ODE (the default for FM).
    Euler,
    /// Heun steps of the same ODE.
    Heun,
}

impl From<SamplerArg> for Sampler {
    fn from(s: SamplerArg) -> Self {
        match s {
            SamplerArg::Ancestral => Sampler::Ancestral,
            SamplerArg::Euler => Sampler::Euler,
            SamplerArg::Heun => Sampler::Heun,
        }
    }
}

/// NoProp-DT's loop order (`--order`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
pub enum OrderArg {
    /// Each mini-batch once; for t = 1…T block t's step and one shared step.
    #[default]
    Batch,
    /// Algorithm 1: for t = 1…T a full pass over the data training block t.
    Paper,
}

impl From<OrderArg> for Order {
    fn from(o: OrderArg) -> Self {
        match o {
            OrderArg::Batch => Order::Batch,
            OrderArg::Paper => Order::Paper,
        }
    }
}

/// How a run is spread over the ranks of an MPI job (`--distributed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistributedArg {
    /// NoProp-DT only: the T blocks are split across the ranks; every rank
    /// reads the whole mini-batch and applies the T shared steps
    /// (docs/DISTRIBUTED.md).
    Block,
    /// Every method: each rank trains on its slice of every mini-batch and
    /// the gradients are summed across the ranks in a fixed order.
    Data,
}

impl DistributedArg {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DistributedArg::Block => "block",
            DistributedArg::Data => "data",
        }
    }
}

/// NoProp-DT's output classifier (`--classifier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
pub enum ClassifierArg {
    /// Eq. 14: softmax of a linear layer.
    #[default]
    Softmax,
    /// Eqs. 15–16: the radial posterior around the class embeddings (σ from `--sigma`).
    Posterior,
}

impl ClassifierArg {
    /// The model's classifier with the posterior's `sigma`.
    pub fn kind(self, sigma: f64) -> ClassifierKind {
        match self {
            ClassifierArg::Softmax => ClassifierKind::Softmax,
            ClassifierArg::Posterior => ClassifierKind::Posterior { sigma },
        }
    }
}

/// How a learned `dimN` embedding starts (`--embedding-init`; the paper's
/// Figure 7 ablation compares the three at `d` = image size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmbeddingInitArg {
    /// Orthonormal rows (needs N ≥ classes).
    Orthogonal,
    /// One prototype image per class (needs N = C·H·W).
    Prototype,
    /// Rows drawn from N(0, I/N).
    Random,
}

impl From<EmbeddingInitArg> for EmbeddingInit {
    fn from(i: EmbeddingInitArg) -> Self {
        match i {
            EmbeddingInitArg::Orthogonal => EmbeddingInit::Orthogonal,
            EmbeddingInitArg::Prototype => EmbeddingInit::Prototype,
            EmbeddingInitArg::Random => EmbeddingInit::Random,
        }
    }
}

/// Which uses of `W_Embed` pass gradients to it in NoProp-DT (`--embed-grad`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
pub enum EmbedGradArg {
    /// Target, noisy input, block output, KL term and classifier input.
    #[default]
    All,
    /// Only the block output `û = softmax(logits)·W_Embed`.
    OutputOnly,
}

impl From<EmbedGradArg> for EmbedGrad {
    fn from(g: EmbedGradArg) -> Self {
        match g {
            EmbedGradArg::All => EmbedGrad::All,
            EmbedGradArg::OutputOnly => EmbedGrad::OutputOnly,
        }
    }
}

/// NoProp-FM's anchor cross-entropy of Eq. 13 (`--anchor-ce`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
pub enum AnchorCe {
    /// On with a learned embedding (dim20, prototype), off with one-hot.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

/// A deprecated `on|off` switch value (`--inference-noise on`), kept for one
/// release beside the new flags (`--no-inference-noise`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Enabled (also `true`).
    #[value(alias = "true")]
    On,
    /// Disabled (also `false`).
    #[value(alias = "false")]
    Off,
}

impl From<OnOff> for bool {
    fn from(v: OnOff) -> bool {
        v == OnOff::On
    }
}

/// The dataset to train or evaluate on (`--dataset`): one of
/// [`DatasetName::ALL`], with its aliases (`cifar-10`, `mnist-test`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DatasetArg(pub DatasetName);

impl FromStr for DatasetArg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        s.parse::<DatasetName>()
            .map(DatasetArg)
            .map_err(|_| unknown("dataset", s, &DatasetName::ALL.map(DatasetName::as_str)))
    }
}

impl fmt::Display for DatasetArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// The class embedding (`--embedding`): `one-hot`, `dimN` (the paper's
/// `dim20`) or `prototype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddingArg(pub EmbeddingKind);

impl FromStr for EmbeddingArg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        s.parse::<EmbeddingKind>()
            .map(EmbeddingArg)
            .map_err(|_| unknown("embedding", s, &["one-hot", "dim20", "prototype"]))
    }
}

impl fmt::Display for EmbeddingArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where to train (`--device`): `cpu`, `cuda`, `cuda:N` or `auto` (CUDA
/// device 0 when it opens, else the CPU).
///
/// In a distributed run (`--distributed`, docs/DISTRIBUTED.md) `cuda` and
/// `auto` give each rank GPU `local_rank mod n_gpus` ([`gpu_for_rank`]), so
/// the ranks of a node spread over its GPUs (and share them when there are
/// more ranks than GPUs); `cuda:N` puts every rank on GPU N.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DeviceArg {
    /// The CPU (the default).
    #[default]
    Cpu,
    /// CUDA device `N` (`cuda:N`), or `None` for plain `cuda`: device 0 in a
    /// single process, `local_rank mod n_gpus` for a rank of a distributed run.
    Cuda(Option<usize>),
    /// CUDA device 0 (a rank's [`gpu_for_rank`]) if it opens, else the CPU.
    Auto,
}

impl FromStr for DeviceArg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "cpu" => Ok(DeviceArg::Cpu),
            "auto" => Ok(DeviceArg::Auto),
            "cuda" => Ok(DeviceArg::Cuda(None)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceArg::Cuda(Some(n))),
                Some(Err(_)) => Err(Error::config(format!(
                    "device `{s}`: the CUDA ordinal must be a number (cuda:0, cuda:1, …)"
                ))),
                None => Err(unknown("device", s, &["cpu", "cuda", "cuda:N", "auto"])),
            },
        }
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceArg::Cpu => f.write_str("cpu"),
            DeviceArg::Cuda(None) => f.write_str("cuda"),
            DeviceArg::Cuda(Some(n)) => write!(f, "cuda:{n}"),
            DeviceArg::Auto => f.write_str("auto"),
        }
    }
}

impl DeviceArg {
    /// Whether this asks for a GPU (`cuda` or `cuda:N`; not `auto`).
    pub fn is_cuda(&self) -> bool {
        matches!(self, DeviceArg::Cuda(_))
    }

    /// Open the device; the string says which was chosen and why.
    pub fn open(&self) -> Result<(noprop_tensor::Device, String), Error> {
        Ok(noprop_tensor::Device::parse(&self.to_string())?)
    }

    /// Open the device of a rank whose rank on its node is `local_rank`:
    /// `cuda` gives GPU [`gpu_for_rank`]`(local_rank, n_gpus)`, `auto` the
    /// same when a GPU opens (else the CPU), `cpu` and `cuda:N` as
    /// [`DeviceArg::open`]. For local rank 0 this is [`DeviceArg::open`].
    pub fn open_for_rank(
        &self,
        local_rank: usize,
    ) -> Result<(noprop_tensor::Device, String), Error> {
        use noprop_tensor::cuda::device_count;
        use noprop_tensor::Device;
        if local_rank == 0 {
            return self.open();
        }
        match self {
            DeviceArg::Cuda(None) => {
                let n = device_count()?;
                let g = gpu_for_rank(local_rank, n)?;
                let (d, _) = Device::parse(&format!("cuda:{g}"))?;
                Ok((
                    d,
                    format!("cuda:{g} (local rank {local_rank} mod {n} GPU(s))"),
                ))
            }
            DeviceArg::Auto => {
                let n = match device_count() {
                    Ok(n) if n > 0 => n,
                    Ok(_) => return Ok((Device::Cpu, "cpu (auto: no CUDA device)".into())),
                    Err(e) => return Ok((Device::Cpu, format!("cpu (auto: no CUDA device: {e})"))),
                };
                let g = gpu_for_rank(local_rank, n)?;
                match Device::parse(&format!("cuda:{g}")) {
                    Ok((d, _)) => Ok((
                        d,
                        format!("cuda:{g} (auto: local rank {local_rank} mod {n} GPU(s))"),
                    )),
                    Err(e) => Ok((
                        Device::Cpu,
                        format!("cpu (auto: cuda:{g} did not open: {e})"),
                    )),
                }
            }
            _ => self.open(),
        }
    }
}

/// The GPU of a rank: `local_rank mod n_gpus`, where `local_rank` is the
/// rank's index among the ranks on its node (MPI's shared-memory split) and
/// `n_gpus` the GPUs the node shows the process. More ranks than GPUs share
/// them round-robin (ranks 0 and 2 of 3 on GPU 0 of 2); no GPU is an error.
pub fn gpu_for_rank(local_rank: usize, n_gpus: usize) -> Result<usize, Error> {
    if n_gpus == 0 {
        return Err(Error::config(format!(
            "--device cuda: local rank {local_rank} finds no CUDA device"
        )));
    }
    Ok(local_rank % n_gpus)
}

/// The known value closest to `typed`, if any is close enough to be a
/// plausible typo (Jaro–Winkler similarity ≥ 0.8, which favours a shared
/// prefix, as typos of long names usually keep it).
pub fn suggest<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(typed, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

fn unknown(what: &'static str, typed: &str, known: &[&str]) -> Error {
    Error::UnknownValue {
        what,
        typed: typed.to_string(),
        expected: known.join(", "),
        suggestion: suggest(typed, known).map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_closest_value() {
        let e = "nprop-dt".parse::<MethodName>().unwrap_err().to_string();
        assert!(e.contains("did you mean `noprop-dt`"), "{e}");
        let e = "fashon-mnist"
            .parse::<DatasetArg>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `fashion-mnist`"), "{e}");
        let e = "one_hot2".parse::<EmbeddingArg>().unwrap_err().to_string();
        assert!(e.contains("did you mean `one-hot`"), "{e}");
        let e = "cdua".parse::<DeviceArg>().unwrap_err().to_string();
        assert!(e.contains("did you mean `cuda`"), "{e}");
        // Nothing plausible: no suggestion, but the list of values.
        let e = "zzzzzz".parse::<MethodName>().unwrap_err().to_string();
        assert!(!e.contains("did you mean"), "{e}");
        assert!(e.contains("noprop-fm"), "{e}");
    }

    #[test]
    fn values_round_trip() {
        for m in MethodName::ALL.into_iter().chain(MethodName::RELATIVES) {
            assert_eq!(m.as_str().parse::<MethodName>().unwrap(), m);
            let v = m.to_possible_value().unwrap();
            assert_eq!(v.get_name(), m.as_str());
        }
        assert_eq!(
            "cuda:3".parse::<DeviceArg>().unwrap(),
            DeviceArg::Cuda(Some(3))
        );
        assert_eq!("cuda".parse::<DeviceArg>().unwrap(), DeviceArg::Cuda(None));
        assert_eq!("cuda".parse::<DeviceArg>().unwrap().to_string(), "cuda");
        assert_eq!("cuda:0".parse::<DeviceArg>().unwrap().to_string(), "cuda:0");
        assert!("cuda:x".parse::<DeviceArg>().is_err());
        assert_eq!(
            "dim32".parse::<EmbeddingArg>().unwrap().0,
            EmbeddingKind::Learned { dim: 32 }
        );
        assert_eq!(
            "cifar-10".parse::<DatasetArg>().unwrap().0,
            DatasetName::Cifar10
        );
    }

    #[test]
    fn ranks_spread_over_the_gpus_of_their_node() {
        // 4 ranks on a node of 2 GPUs: 0, 1, 0, 1.
        let of = |n: usize, ranks: usize| {
            (0..ranks)
                .map(|l| gpu_for_rank(l, n).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(of(2, 4), vec![0, 1, 0, 1]);
        // More GPUs than ranks: one each, the rest idle.
        assert_eq!(of(8, 3), vec![0, 1, 2]);
        // Several ranks on one GPU.
        assert_eq!(of(1, 3), vec![0, 0, 0]);
        assert_eq!(of(3, 7), vec![0, 1, 2, 0, 1, 2, 0]);
        let e = gpu_for_rank(2, 0).unwrap_err().to_string();
        assert!(
            e.contains("local rank 2") && e.contains("no CUDA device"),
            "{e}"
        );
    }

    #[test]
    fn local_rank_0_opens_what_a_single_process_opens() {
        // Without a GPU in this build or on this machine both fail alike
        // for `cuda` and both give the CPU for `cpu`.
        for arg in [
            DeviceArg::Cpu,
            DeviceArg::Cuda(None),
            DeviceArg::Cuda(Some(1)),
        ] {
            let a = arg
                .open()
                .map(|(d, _)| d.to_string())
                .map_err(|e| e.to_string());
            let b = arg
                .open_for_rank(0)
                .map(|(d, _)| d.to_string())
                .map_err(|e| e.to_string());
            assert_eq!(a, b, "{arg}");
        }
        assert_eq!(
            DeviceArg::Cpu.open_for_rank(5).unwrap().0.to_string(),
            "cpu"
        );
    }
}
