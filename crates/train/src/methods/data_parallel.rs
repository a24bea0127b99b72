//! Data-parallel training of any method (`--distributed data`,
//! docs/DISTRIBUTED.md): rank r of R trains on rows `⌊rB/R⌋..⌊(r+1)B/R⌋` of
//! every mini-batch of B; at every optimiser step each rank weighs its
//! gradients by its share of the batch, `b_r/B`, and the ranks sum them in
//! rank order (an all-gather, then `((g_0 + g_1) + g_2) + …` on every rank),
//! so every rank applies the same update and a run is deterministic for a
//! given R. Batch-norm running statistics, computed on each rank's slice,
//! are averaged across the ranks before every evaluation and checkpoint.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use noprop_models::EmbeddingKind;
use noprop_nn::optim::{with_grad_hook, GradHook};
use noprop_nn::state::{state_tensors, StateDict, StateLoader};
use noprop_nn::ParamMut;
use noprop_tensor::{ops, DType, Device, Tensor};
use serde_json::{Map, Value};

use super::block_dt::digest;
use crate::comm::Communicator;
use crate::error::{Error, Result};
use crate::method::{Method, Phase};
use crate::options::MethodName;

/// Any [`Method`], its mini-batches split across `comm`'s ranks.
pub struct DataParallel {
    inner: Box<dyn Method>,
    comm: Rc<dyn Communicator>,
    /// The error of a failed all-reduce inside an optimiser step.
    failure: Rc<RefCell<Option<Error>>>,
    /// Bytes this rank sent in gradient all-reduces (this invocation).
    grad_bytes: Rc<Cell<u64>>,
    steps: u64,
    sync_bytes: u64,
    stale: bool,
}

impl DataParallel {
    /// Spread `inner` over `comm`'s ranks.
    pub fn new(mut inner: Box<dyn Method>, comm: Rc<dyn Communicator>) -> Result<Self> {
        if inner.state_dict().is_none() {
            return Err(Error::config(format!(
                "{} cannot be trained data-parallel (no named state)",
                inner.method()
            )));
        }
        inner.steps_on_caller_thread();
        Ok(DataParallel {
            inner,
            comm,
            failure: Rc::new(RefCell::new(None)),
            grad_bytes: Rc::new(Cell::new(0)),
            steps: 0,
            sync_bytes: 0,
            stale: false,
        })
    }
}

/// Rows `lo..hi` of `x` (`[N, …]`), on `x`'s device: a row gather there
/// for a GPU batch (no host copy), a copy of the slice on the host.
fn rows(x: &Tensor, lo: usize, hi: usize) -> Result<Tensor> {
    let per: usize = x.shape()[1..].iter().product();
    let mut shape = x.shape().to_vec();
    shape[0] = hi - lo;
    if !x.is_on_host() {
        let flat = x.clone().reshape(&[x.dim(0), per])?;
        let idx: Vec<usize> = (lo..hi).collect();
        return Ok(ops::gather_rows(&flat, &idx)?.reshape(&shape)?);
    }
    let t = match x.dtype() {
        DType::F32 => Tensor::from_slice(&x.as_slice::<f32>()?[lo * per..hi * per], &shape)?,
        DType::F64 => Tensor::from_slice(&x.as_slice::<f64>()?[lo * per..hi * per], &shape)?,
    };
    Ok(t)
}

/// Sum `w · grad` over the ranks, in rank order, into every `grad`.
///
/// Gradients on a GPU are staged through host memory: copied to the host
/// (weighted there, in f32 as on the CPU), all-gathered, summed in rank
/// order on the host, and copied back to the gradient's device, so the sum
/// is bit-identical on every rank whatever its device.
fn all_reduce_grads(
    comm: &dyn Communicator,
    w: f64,
    params: &mut [ParamMut<'_>],
    sent: &Cell<u64>,
) -> Result<()> {
    let mut mine = Vec::new();
    for p in params.iter() {
        match p.grad.dtype() {
            DType::F32 => {
                let wf = w as f32;
                for v in p.grad.try_to_vec_f32()? {
                    mine.extend_from_slice(&(v * wf).to_le_bytes());
                }
            }
            DType::F64 => {
                for v in p.grad.try_to_vec_f64()? {
                    mine.extend_from_slice(&(v * w).to_le_bytes());
                }
            }
        }
    }
    let all = comm.all_gather_bytes(&mine)?;
    sent.set(sent.get() + mine.len() as u64);
    if let Some((r, b)) = all.iter().enumerate().find(|(_, b)| b.len() != mine.len()) {
        return Err(Error::Distributed(format!(
            "rank {r} sent {} bytes of gradients, rank {} {}: the ranks' models differ",
            b.len(),
            comm.rank(),
            mine.len()
        )));
    }
    let mut at = 0usize;
    for p in params.iter_mut() {
        let n = p.grad.numel();
        let shape = p.grad.shape().to_vec();
        let device = p.grad.device();
        let summed = match p.grad.dtype() {
            DType::F32 => {
                let get = |b: &[u8], i: usize| {
                    let o = at + 4 * i;
                    f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
                };
                let v: Vec<f32> = (0..n)
                    .map(|i| all[1..].iter().fold(get(&all[0], i), |s, b| s + get(b, i)))
                    .collect();
                at += 4 * n;
                Tensor::from_vec(v, &shape)?
            }
            DType::F64 => {
                let get = |b: &[u8], i: usize| {
                    let o = at + 8 * i;
                    f64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
                };
                let v: Vec<f64> = (0..n)
                    .map(|i| all[1..].iter().fold(get(&all[0], i), |s, b| s + get(b, i)))
                    .collect();
                at += 8 * n;
                Tensor::from_vec(v, &shape)?
            }
        };
        *p.grad = summed.to_device(&device)?;
    }
    Ok(())
}

/// Batch-norm running statistics: the state that differs between ranks.
fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

impl Method for DataParallel {
    fn method(&self) -> MethodName {
        self.inner.method()
    }

    fn embedding(&self) -> EmbeddingKind {
        self.inner.embedding()
    }

    fn seed(&self) -> u64 {
        self.inner.seed()
    }

    fn step(&self) -> u64 {
        self.inner.step()
    }

    fn passes(&self) -> Option<usize> {
        self.inner.passes()
    }

    fn train_batch(
        &mut self,
        x: &Tensor,
        y: &[usize],
        epoch: usize,
        pass: usize,
    ) -> Result<(f64, usize)> {
        let (b, r, n) = (y.len(), self.comm.rank(), self.comm.size());
        let (lo, hi) = (r * b / n, (r + 1) * b / n);
        if b < n {
            return Err(Error::Distributed(format!(
                "a mini-batch of {b} images cannot give each of the {n} ranks one; use a larger --batch-size or --limit-train"
            )));
        }
        let xs = rows(x, lo, hi)?;
        let w = (hi - lo) as f64 / b as f64;
        let (comm, failure, sent) = (
            self.comm.clone(),
            self.failure.clone(),
            self.grad_bytes.clone(),
        );
        let hook: GradHook = Box::new(move |params| {
            all_reduce_grads(&*comm, w, params, &sent).map_err(|e| {
                let what = e.to_string();
                *failure.borrow_mut() = Some(e);
                noprop_nn::Error::GradHook { what }
            })
        });
        let inner = &mut self.inner;
        let out = with_grad_hook(hook, || inner.train_batch(&xs, &y[lo..hi], epoch, pass));
        let (l, k) = match out {
            Ok(v) => v,
            Err(e) => return Err(self.failure.borrow_mut().take().unwrap_or(e)),
        };
        self.steps += 1;
        self.stale = true;
        // The mini-batch's loss: the slices' losses weighted by their shares.
        let mut v = [l * w];
        self.comm.all_reduce_sum(&mut v)?;
        Ok((v[0], k))
    }

    /// Average the batch-norm running statistics over the ranks (rank order).
    fn synchronize(&mut self) -> Result<()> {
        if !self.stale || self.comm.size() == 1 {
            self.stale = false;
            return Ok(());
        }
        let sd = self.inner.state_dict().ok_or_else(|| {
            Error::Distributed("the model's state is not available to synchronise".into())
        })?;
        let mut state = state_tensors(sd)?;
        let mut stats = Vec::new();
        for (name, t) in &state {
            if is_running_stat(name) {
                stats.extend(t.try_to_vec_f64()?);
            }
        }
        if !stats.is_empty() {
            self.sync_bytes += 8 * stats.len() as u64;
            self.comm.all_reduce_sum(&mut stats)?;
            let ranks = self.comm.size() as f64;
            let mut at = 0usize;
            for (name, t) in state.iter_mut() {
                if is_running_stat(name) {
                    let n = t.numel();
                    let v: Vec<f64> = stats[at..at + n].iter().map(|s| s / ranks).collect();
                    at += n;
                    *t = Tensor::from_vec(v, t.shape())?;
                }
            }
            let tensors: HashMap<String, Tensor> = state.into_iter().collect();
            let from = PathBuf::from("<averaged batch-norm statistics>");
            let mut loader = StateLoader::new(&from, &tensors);
            let sd = self.inner.state_dict().ok_or_else(|| {
                Error::Distributed("the model's state is not available to synchronise".into())
            })?;
            sd.visit_state("", &mut loader)?;
            loader.finish()?;
        }
        self.stale = false;
        Ok(())
    }

    fn shared_digest(&mut self) -> Result<Option<u64>> {
        match self.inner.state_dict() {
            Some(sd) => Ok(Some(digest(&state_tensors(sd)?)?)),
            None => Ok(None),
        }
    }

    fn state_dict(&mut self) -> Option<&mut dyn StateDict> {
        self.inner.state_dict()
    }

    fn predict(&mut self, x: &Tensor, key: u64, phase: Phase) -> Result<Vec<usize>> {
        self.inner.predict(x, key, phase)
    }

    fn save(&mut self, path: &Path, meta: HashMap<String, String>) -> Result<()> {
        self.inner.save(path, meta)
    }

    fn describe(&mut self) -> String {
        format!(
            "{}; data-parallel over {}, rank {}",
            self.inner.describe(),
            self.comm.describe(),
            self.comm.rank()
        )
    }

    fn epoch_note(&self) -> String {
        let mut s = self.inner.epoch_note();
        if let Some(per) = self.grad_bytes.get().checked_div(self.steps) {
            s.push_str(&format!(
                ", {per} B of gradients sent per mini-batch per rank"
            ));
        }
        s
    }

    fn result_fields(&self) -> Map<String, Value> {
        let mut m = self.inner.result_fields();
        m.insert(
            "distributed".into(),
            serde_json::json!({
                "mode": "data",
                "ranks": self.comm.size(),
                "communicator": self.comm.describe(),
                "steps_this_run": self.steps,
                "step_bytes_sent_per_rank": self.grad_bytes.get(),
                "step_bytes_sent_per_minibatch_per_rank": self.grad_bytes.get().checked_div(self.steps).unwrap_or(0),
                "sync_bytes_sent_per_rank": self.sync_bytes,
            }),
        );
        m
    }

    fn eval_fields(&self) -> Map<String, Value> {
        self.inner.eval_fields()
    }

    /// Move the wrapped method to `device` (this rank's GPU with `--device
    /// cuda`); the gradient exchange stages through host memory.
    fn to_device(&mut self, device: &Device) -> Result<()> {
        self.inner.to_device(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::LocalGroup;

    #[test]
    fn rows_are_a_copy_of_the_slice_on_the_batch_device() {
        let x = Tensor::from_vec((0..24).map(|v| v as f32).collect(), &[4, 2, 3]).unwrap();
        let r = rows(&x, 1, 3).unwrap();
        assert_eq!(r.shape(), &[2, 2, 3]);
        assert_eq!(
            r.to_vec_f32(),
            (6..18).map(|v| v as f32).collect::<Vec<_>>()
        );
        assert!(r.is_on_host());
    }

    /// The host staging of the gradient exchange: every rank ends with
    /// `Σ_r w_r·g_r` summed in rank order, bit-identical on every rank and
    /// on the gradient's device; f32 and f64 gradients; the bytes counted.
    #[test]
    fn gradients_are_weighted_and_summed_in_rank_order_on_every_rank() {
        let ranks = 3;
        let out: Vec<(Vec<f32>, Vec<f64>, bool, u64)> = std::thread::scope(|s| {
            let hs: Vec<_> = LocalGroup::new(ranks)
                .into_iter()
                .map(|c| {
                    s.spawn(move || {
                        let r = c.rank() as f32;
                        let (mut v1, mut v2) = (
                            Tensor::zeros(&[2, 2], DType::F32),
                            Tensor::zeros(&[3], DType::F64),
                        );
                        let mut g1 =
                            Tensor::from_vec(vec![0.1 + r, -1.0, 1e-8 * (r + 1.0), 3.0], &[2, 2])
                                .unwrap();
                        let mut g2 = Tensor::from_vec(vec![0.3, f64::from(r), -2.5], &[3]).unwrap();
                        let sent = Cell::new(0);
                        // Shares 1/4, 1/4, 1/2 of a batch of 4 (weights w_r = b_r/B).
                        let w = if c.rank() == 2 { 0.5 } else { 0.25 };
                        let mut params = vec![
                            ParamMut {
                                name: "a".into(),
                                value: &mut v1,
                                grad: &mut g1,
                            },
                            ParamMut {
                                name: "b".into(),
                                value: &mut v2,
                                grad: &mut g2,
                            },
                        ];
                        all_reduce_grads(&c, w, &mut params, &sent).unwrap();
                        (
                            g1.to_vec_f32(),
                            g2.to_vec_f64(),
                            g1.is_on_host() && g2.is_on_host(),
                            sent.get(),
                        )
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ws = [0.25f32, 0.25, 0.5];
        let g1 = |r: usize| {
            let r32 = r as f32;
            [0.1 + r32, -1.0, 1e-8 * (r32 + 1.0), 3.0]
        };
        let want1: Vec<f32> = (0..4)
            .map(|i| (0..ranks).map(|r| g1(r)[i] * ws[r]).fold(0.0, |s, v| s + v))
            .collect();
        // The first term starts the fold: ((w0·g0 + w1·g1) + w2·g2).
        let want1_exact: Vec<f32> = (0..4)
            .map(|i| (1..ranks).fold(g1(0)[i] * ws[0], |s, r| s + g1(r)[i] * ws[r]))
            .collect();
        let want2: Vec<f64> = vec![
            (0.3 * 0.25 + 0.3 * 0.25) + 0.3 * 0.5,
            (0.0 * 0.25 + 0.25) + 2.0 * 0.5,
            (-2.5 * 0.25 + -2.5 * 0.25) + -2.5 * 0.5,
        ];
        for (a, b, host, sent) in &out {
            assert_eq!(a, &want1_exact);
            for (x, y) in a.iter().zip(&want1) {
                assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
            }
            assert_eq!(b, &want2);
            assert!(host);
            // 4 f32 + 3 f64 per rank.
            assert_eq!(*sent, 4 * 4 + 3 * 8);
        }
        // Bit-identical on every rank.
        assert!(out.windows(2).all(|p| p[0].0 == p[1].0 && p[0].1 == p[1].1));
    }
}
