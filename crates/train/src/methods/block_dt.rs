//! Block-parallel NoProp-DT (`--distributed block`, docs/DISTRIBUTED.md):
//! the T blocks are split across the ranks, every rank reads the same
//! mini-batch, updates its own blocks, all-gathers what the shared steps
//! need from every block (its L2 loss and, with a learned embedding, its
//! `∂L/∂W_Embed`), and applies the T shared steps in block order itself.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use noprop_models::{BlockOut, EmbeddingKind};
use noprop_nn::io::{from_bytes, to_bytes};
use noprop_tensor::{Device, Tensor};
use serde_json::{Map, Value};

use super::Dt;
use crate::comm::Communicator;
use crate::error::{Error, Result};
use crate::method::{Method, Phase};
use crate::options::MethodName;

/// The blocks (1-based, `lo..hi`) rank `rank` of `ranks` owns: contiguous,
/// balanced (sizes differ by at most one when R does not divide T).
pub fn owned_blocks(t: usize, rank: usize, ranks: usize) -> Range<usize> {
    (rank * t / ranks + 1)..((rank + 1) * t / ranks + 1)
}

/// NoProp-DT with its blocks split across the ranks of `comm`.
pub struct BlockParallelDt {
    /// The model: every rank holds all of it; between synchronisations only
    /// its own blocks and the shared state are current.
    pub dt: Dt,
    comm: Rc<dyn Communicator>,
    owned: Range<usize>,
    /// Blocks were trained since the last [`Method::synchronize`].
    stale: bool,
    /// Mini-batches and bytes sent by the per-step exchange (this invocation).
    steps: u64,
    step_bytes: u64,
    /// Bytes sent by block synchronisations.
    sync_bytes: u64,
}

impl BlockParallelDt {
    /// Split `dt`'s blocks across `comm`'s ranks.
    pub fn new(dt: Dt, comm: Rc<dyn Communicator>) -> Result<Self> {
        let t = dt.model.num_blocks();
        let owned = owned_blocks(t, comm.rank(), comm.size());
        Ok(BlockParallelDt {
            dt,
            comm,
            owned,
            stale: false,
            steps: 0,
            step_bytes: 0,
            sync_bytes: 0,
        })
    }

    /// This rank's blocks (1-based range).
    pub fn owned(&self) -> Range<usize> {
        self.owned.clone()
    }

    fn rank_blocks(&self, r: usize) -> Range<usize> {
        owned_blocks(self.dt.model.num_blocks(), r, self.comm.size())
    }

    /// `W_Embed`'s shape (the shape of every block's `∂L/∂W_Embed`).
    fn embed_shape(&self) -> Vec<usize> {
        self.dt.model.embedding.weight.shape().to_vec()
    }
}

/// Per block: the L2 loss (f64), a flag, and `∂L/∂W_Embed` as f32 when
/// present. A gradient on a GPU is staged through host memory here (a
/// device-to-host copy of classes × d floats per block) for the exchange.
fn encode(outs: &[BlockOut]) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    for o in outs {
        b.extend_from_slice(&o.loss_l2.to_le_bytes());
        match &o.dembed {
            None => b.push(0),
            Some(g) => {
                b.push(1);
                for v in g.try_to_vec_f32()? {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    Ok(b)
}

/// The inverse of [`encode`] for `blocks` blocks of rank `rank`; each
/// `∂L/∂W_Embed` is copied onto `device` (host-to-device on a GPU), where
/// the shared steps use it.
fn decode(
    bytes: &[u8],
    blocks: usize,
    shape: &[usize],
    rank: usize,
    device: &Device,
) -> Result<Vec<BlockOut>> {
    let bad = || {
        Error::Distributed(format!(
            "rank {rank} sent {} bytes that are not {blocks} block outputs",
            bytes.len()
        ))
    };
    let n: usize = shape.iter().product();
    let mut at = 0usize;
    let mut take = |k: usize| -> Result<&[u8]> {
        let s = bytes.get(at..at + k).ok_or_else(bad)?;
        at += k;
        Ok(s)
    };
    let mut outs = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        let loss_l2 = f64::from_le_bytes(take(8)?.try_into().map_err(|_| bad())?);
        let dembed = match take(1)?[0] {
            0 => None,
            _ => {
                let v: Vec<f32> = take(4 * n)?
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Some(Tensor::from_vec(v, shape)?.to_device(device)?)
            }
        };
        outs.push(BlockOut { loss_l2, dembed });
    }
    if at != bytes.len() {
        return Err(bad());
    }
    Ok(outs)
}

/// FNV-1a over names and values: the digest compared across ranks.
pub(crate) fn digest(tensors: &[(String, Tensor)]) -> Result<u64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (name, t) in tensors {
        eat(name.as_bytes());
        for v in t.try_to_vec_f64()? {
            eat(&v.to_bits().to_le_bytes());
        }
    }
    Ok(h)
}

impl Method for BlockParallelDt {
    fn method(&self) -> MethodName {
        MethodName::NopropDt
    }

    fn embedding(&self) -> EmbeddingKind {
        self.dt.embedding()
    }

    fn seed(&self) -> u64 {
        self.dt.seed()
    }

    fn step(&self) -> u64 {
        self.dt.step()
    }

    /// Move the model (every block, the shared state) to `device`: this
    /// rank's GPU with `--device cuda` (docs/DISTRIBUTED.md, "GPUs"). The
    /// exchange stages the shared gradients through host memory.
    fn to_device(&mut self, device: &Device) -> Result<()> {
        self.dt.to_device(device)
    }

    fn train_batch(
        &mut self,
        x: &Tensor,
        y: &[usize],
        epoch: usize,
        _pass: usize,
    ) -> Result<(f64, usize)> {
        let mine = self.dt.model.update_blocks(self.owned.clone(), x, y)?;
        let bytes = encode(&mine)?;
        let all = self.comm.all_gather_bytes(&bytes)?;
        self.step_bytes += bytes.len() as u64;
        self.steps += 1;
        let shape = self.embed_shape();
        let device = self.dt.model.device().clone();
        let mut outs = Vec::with_capacity(self.dt.model.num_blocks());
        for (r, b) in all.iter().enumerate() {
            outs.extend(decode(b, self.rank_blocks(r).len(), &shape, r, &device)?);
        }
        let losses = self.dt.model.shared_steps(outs, y, epoch)?;
        self.stale = true;
        Ok((losses.iter().map(|l| l.total()).sum(), losses.len()))
    }

    /// All-gather every rank's blocks (parameters, batch-norm statistics,
    /// AdamW state) so that every rank holds the whole model.
    fn synchronize(&mut self) -> Result<()> {
        if !self.stale || self.comm.size() == 1 {
            self.stale = false;
            return Ok(());
        }
        let mut mine = Vec::new();
        for t in self.owned.clone() {
            mine.extend(self.dt.model.block_state(t)?);
        }
        let bytes = to_bytes(&mine, &HashMap::new())?;
        self.sync_bytes += bytes.len() as u64;
        let all = self.comm.all_gather_bytes(&bytes)?;
        for (r, b) in all.iter().enumerate() {
            if r == self.comm.rank() {
                continue;
            }
            let from = PathBuf::from(format!("<blocks of rank {r}>"));
            let (tensors, _) = from_bytes(b, &from)?;
            let mut tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
            for t in self.rank_blocks(r) {
                let (p1, p2) = (format!("block{t}."), format!("opt.block{t}."));
                let keys: Vec<String> = tensors
                    .keys()
                    .filter(|k| k.starts_with(&p1) || k.starts_with(&p2))
                    .cloned()
                    .collect();
                let part = keys
                    .into_iter()
                    .filter_map(|k| tensors.remove_entry(&k))
                    .collect();
                self.dt.model.load_block_state(t, &from, part)?;
            }
            if let Some(k) = tensors.keys().next() {
                return Err(Error::Distributed(format!(
                    "rank {r} sent tensor `{k}` of a block it does not own"
                )));
            }
        }
        self.stale = false;
        Ok(())
    }

    fn shared_digest(&mut self) -> Result<Option<u64>> {
        Ok(Some(digest(&self.dt.model.shared_state()?)?))
    }

    fn predict(&mut self, x: &Tensor, key: u64, phase: Phase) -> Result<Vec<usize>> {
        if self.stale && self.comm.size() > 1 {
            return Err(Error::Distributed(
                "prediction before the blocks were synchronised".into(),
            ));
        }
        self.dt.predict(x, key, phase)
    }

    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        if self.stale && self.comm.size() > 1 {
            return Err(Error::Distributed(
                "checkpoint before the blocks were synchronised".into(),
            ));
        }
        self.dt.save(path, meta)
    }

    fn describe(&mut self) -> String {
        format!(
            "{}; block-parallel over {}, rank {} trains blocks {}..={}",
            self.dt.describe(),
            self.comm.describe(),
            self.comm.rank(),
            self.owned.start,
            self.owned.end.saturating_sub(1)
        )
    }

    fn epoch_note(&self) -> String {
        if self.steps == 0 {
            return String::new();
        }
        format!(
            ", {} B sent per mini-batch per rank",
            self.step_bytes / self.steps
        )
    }

    fn result_fields(&self) -> Map<String, Value> {
        let mut m = self.dt.result_fields();
        m.insert(
            "distributed".into(),
            serde_json::json!({
                "mode": "block",
                "ranks": self.comm.size(),
                "communicator": self.comm.describe(),
                "rank0_blocks": [self.owned.start, self.owned.end.saturating_sub(1)],
                "steps_this_run": self.steps,
                "step_bytes_sent_per_rank": self.step_bytes,
                "step_bytes_sent_per_minibatch_per_rank": self.step_bytes.checked_div(self.steps).unwrap_or(0),
                "sync_bytes_sent_per_rank": self.sync_bytes,
            }),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_split_contiguously_and_balanced() {
        let split = |t, r| (0..r).map(|k| owned_blocks(t, k, r)).collect::<Vec<_>>();
        assert_eq!(split(10, 1), vec![1..11]);
        assert_eq!(split(10, 2), vec![1..6, 6..11]);
        assert_eq!(split(10, 3), vec![1..4, 4..7, 7..11]);
        assert_eq!(split(2, 3), vec![1..1, 1..2, 2..3]);
    }

    #[test]
    fn block_outputs_round_trip_and_bad_bytes_are_errors() {
        let g = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 3.5, 0.0, 1e-7], &[2, 3]).unwrap();
        let outs = vec![
            BlockOut {
                loss_l2: 1.25,
                dembed: Some(g.clone()),
            },
            BlockOut {
                loss_l2: -0.0,
                dembed: None,
            },
        ];
        let b = encode(&outs).unwrap();
        let back = decode(&b, 2, &[2, 3], 1, &Device::Cpu).unwrap();
        assert_eq!(back[0].loss_l2, 1.25);
        assert_eq!(
            back[0].dembed.as_ref().unwrap().to_vec_f32(),
            g.to_vec_f32()
        );
        assert!(back[1].dembed.is_none());
        let e = decode(&b[..b.len() - 1], 2, &[2, 3], 1, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("rank 1"), "{e}");
        assert!(decode(&b, 1, &[2, 3], 0, &Device::Cpu).is_err());
    }
}
