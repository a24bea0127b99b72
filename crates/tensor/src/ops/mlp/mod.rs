//! A chain of dense layers fused into one pass over the rows: the per-step
//! network of CT/FM inference (docs/PERFORMANCE.md, round 10).
//!
//! Every layer computes `y = ReLU?(x·Wᵀ + b)` (PyTorch's `nn.Linear`
//! layout, `W: [out, in]`). [`PackedMlp::pack`] copies the weights once
//! into the column panels the CPU microkernel reads; [`PackedMlp::forward`]
//! then takes each block of rows through every layer while the block's
//! activations stay in cache, instead of one matrix product (with its own
//! packing and thread dispatch) per layer per call.
//!
//! The fused kernel exists for `f32` host tensors on x86-64 hosts with AVX2
//! and FMA but without AVX-512F; everywhere else (a GPU, `f64`, other
//! hosts) [`PackedMlp::pack`] answers `None` and callers keep their
//! per-layer products. On AVX-512 hosts the `gemm` crate's 16-lane kernels
//! are kept because this 8-lane kernel has not been measured there.
//!
//! Each output is a sum over the layer's inputs in index order followed by
//! the addends of [`PackedMlp::forward`], the same whatever the row count,
//! the block a row falls in, or the thread count, so results are
//! bit-for-bit reproducible. It is the `gemm` crate's order on some row
//! counts, not all, so the numbers are close to, and not always identical
//! with, [`crate::ops::matmul`]'s.
//!
//! For the same rows evaluated again and again on slowly moving inputs
//! (inference's ODE steps), [`PackedMlp::forward_folded`] folds layer 0's
//! ReLU into layer 1 row by row: with `x̃ = [x, 1]` and `D` the row's ReLU
//! pattern, `ReLU(x̃·W̃0ᵀ)·W1ᵀ = x̃·M̃ᵀ` with `M̃ = W1·D·W̃0`, so a row whose
//! pattern is known costs `k0 + 1` multiply-adds per layer-1 output instead
//! of `n0`. Each row keeps its `M̃` in a [`FoldedRows`] between calls and
//! corrects or updates it for the units whose state changed
//! (docs/PERFORMANCE.md, round 11).

mod cpu;
mod fold;

use crate::{DType, Error, Result, Tensor};

/// One layer of a [`PackedMlp`]: `y = x·Wᵀ + b`, then a ReLU when `relu`.
#[derive(Clone, Copy, Debug)]
pub struct MlpLayer<'a> {
    /// `W: [out, in]`.
    pub weight: &'a Tensor,
    /// `b: [out]`; `None` for no bias.
    pub bias: Option<&'a Tensor>,
    /// Whether a ReLU follows.
    pub relu: bool,
}

/// Extra terms added to one layer's pre-activation in
/// [`PackedMlp::forward`]: layer `layer` computes
/// `ReLU?((x·Wᵀ + rows) + (b + bias))`.
///
/// For the CT/FM network's first fusion layer this is
/// `h1 = ReLU(f(z)·W1_zᵀ + P + (f(t)·W1_tᵀ + b1))`: the cached image
/// projection `P` per row and the step's time row as a bias.
#[derive(Clone, Copy, Debug)]
pub struct LayerAddend<'a> {
    /// The layer (0-based) whose pre-activation receives the terms.
    pub layer: usize,
    /// `[rows, out]`: one row per input row.
    pub rows: &'a Tensor,
    /// `[out]`: added to every row (after the layer's own bias).
    pub bias: &'a Tensor,
}

/// Weights of a chain of dense layers packed once for the fused CPU kernel
/// (see the module docs).
#[derive(Clone, Debug)]
pub struct PackedMlp {
    layers: Vec<cpu::Packed>,
    /// Layer 0 folded into layer 1 ([`PackedMlp::forward_folded`]), where
    /// that saves work.
    fold: Option<fold::Fold>,
    /// A hash of the folded layers' weights: a [`FoldedRows`] belongs to
    /// the packings of one set of weights.
    id: u64,
}

/// What [`PackedMlp::forward_folded`] keeps of each row between calls: the
/// ReLU pattern `D` of the chain's layer 0 at the row's last call, and
/// `M̃ = W1·D·[W0 | b0]` (module docs of `ops::mlp`). Start with
/// `FoldedRows::default()`; the first call sizes it for its rows, and every
/// later call must pass the same number of rows to a packing of the same
/// weights.
#[derive(Clone, Debug, Default)]
pub struct FoldedRows {
    /// The weights' fingerprint and the row count it was sized for
    /// (`None` before the first call).
    owner: Option<(u64, usize)>,
    masks: Vec<u8>,
    m: Vec<f32>,
}

impl PackedMlp {
    /// Whether this host runs the fused kernel (x86-64 with AVX2 and FMA,
    /// without AVX-512F).
    pub fn available() -> bool {
        cpu::available()
    }

    /// Pack `layers` (layer `j + 1` reads layer `j`'s output). `Ok(None)`
    /// where the fused kernel does not run: the host lacks it
    /// ([`PackedMlp::available`]), or a weight is not an `f32` host tensor.
    /// Mismatched shapes are an error.
    pub fn pack(layers: &[MlpLayer<'_>]) -> Result<Option<PackedMlp>> {
        const OP: &str = "PackedMlp::pack";
        if layers.is_empty() {
            return Err(Error::InvalidArgument {
                op: OP,
                why: "a chain needs at least one layer".into(),
            });
        }
        let mut prev: Option<usize> = None;
        for l in layers {
            super::rank(OP, l.weight, 2)?;
            let (out, inp) = (l.weight.dim(0), l.weight.dim(1));
            if out == 0 || inp == 0 {
                return Err(Error::InvalidShape {
                    op: OP,
                    shape: l.weight.shape().to_vec(),
                    why: "a layer needs at least one input and one output",
                });
            }
            if let Some(p) = prev {
                if inp != p {
                    return Err(Error::ShapeMismatch {
                        op: OP,
                        expected: vec![out, p],
                        got: l.weight.shape().to_vec(),
                    });
                }
            }
            if let Some(b) = l.bias {
                b.expect_shape(OP, &[out])?;
                b.expect_dtype(OP, l.weight.dtype())?;
                super::dev::all(OP, [l.weight, b])?;
            }
            prev = Some(out);
        }
        let host_f32 = layers.iter().all(|l| {
            l.weight.device().is_cpu()
                && l.weight.dtype() == DType::F32
                && l.bias.is_none_or(|b| b.device().is_cpu())
        });
        if !host_f32 || !cpu::available() {
            return Ok(None);
        }
        let packed: Vec<cpu::Packed> = layers
            .iter()
            .map(|l| {
                let bias = match l.bias {
                    Some(b) => Some(b.as_slice::<f32>()?),
                    None => None,
                };
                Ok(cpu::Packed::new(
                    l.weight.as_slice::<f32>()?,
                    l.weight.dim(0),
                    l.weight.dim(1),
                    bias,
                    l.relu,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let fold = match (layers, &packed[..]) {
            ([l0, l1, ..], [p0, p1, ..]) => {
                let b0 = match l0.bias {
                    Some(b) => b.as_slice::<f32>()?.to_vec(),
                    None => vec![0.0; p0.n],
                };
                let (w0, w1) = (l0.weight.as_slice::<f32>()?, l1.weight.as_slice::<f32>()?);
                fold::Fold::new(w0, &b0, p0, w1, p1)
            }
            _ => None,
        };
        let id = fold.as_ref().map_or(0, fold::Fold::fingerprint);
        Ok(Some(PackedMlp {
            layers: packed,
            fold,
            id,
        }))
    }

    /// Whether [`PackedMlp::forward_folded`] folds layer 0 into layer 1:
    /// the chain has two layers or more, layer 0 has a ReLU, and
    /// `k0 + 1` rounded up to 12 is at most a quarter of layer 0's outputs.
    pub fn folds(&self) -> bool {
        self.fold.is_some()
    }

    /// Inputs of the first layer.
    pub fn inputs(&self) -> usize {
        self.layers[0].k
    }

    /// Outputs of the last layer.
    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].n
    }

    /// The chain on `x: [rows, inputs]` (an `f32` host tensor), with
    /// `addend`'s terms in its layer: `[rows, outputs]`.
    pub fn forward(&self, x: &Tensor, addend: Option<LayerAddend<'_>>) -> Result<Tensor> {
        self.check_input("PackedMlp::forward", x)?;
        self.run("PackedMlp::forward", x, addend, None)
    }

    /// [`PackedMlp::forward`] for a row set evaluated again and again with
    /// inputs that change a little between calls (the steps of an ODE):
    /// layer 0's ReLU is folded into layer 1 row by row, each row keeping
    /// its pattern and `M̃` in `rows` (see [`FoldedRows`] and the module
    /// docs). Where the chain does not fold ([`PackedMlp::folds`]) this is
    /// [`PackedMlp::forward`] and `rows` is left alone.
    ///
    /// The same sums as [`PackedMlp::forward`] to f32 rounding; each row's
    /// bits depend on its own inputs at this and the earlier calls only.
    /// An addend on layer 0, or a `rows` sized for another row count or
    /// built with other weights, is an error.
    pub fn forward_folded(
        &self,
        rows: &mut FoldedRows,
        x: &Tensor,
        addend: Option<LayerAddend<'_>>,
    ) -> Result<Tensor> {
        const OP: &str = "PackedMlp::forward_folded";
        let n = self.check_input(OP, x)?;
        let Some(fold) = &self.fold else {
            return self.run(OP, x, addend, None);
        };
        if addend.is_some_and(|a| a.layer == 0) {
            return Err(Error::InvalidArgument {
                op: OP,
                why: "an addend on layer 0 cannot be folded into layer 1".into(),
            });
        }
        match rows.owner {
            None => {
                rows.owner = Some((self.id, n));
                rows.masks = vec![0; n * fold.mask_bytes()];
                rows.m = vec![0.0; n * fold.m_len()];
            }
            Some((id, _)) if id != self.id => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    why: "these FoldedRows belong to other weights".into(),
                })
            }
            Some((_, was)) if was != n => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    why: format!("FoldedRows sized for {was} rows, called with {n}"),
                })
            }
            Some(_) => {}
        }
        let state = cpu::FoldState {
            fold,
            masks: &mut rows.masks,
            m: &mut rows.m,
        };
        self.run(OP, x, addend, Some(state))
    }

    /// Check that `x` is `[rows, inputs]` in `f32`; its row count.
    fn check_input(&self, op: &'static str, x: &Tensor) -> Result<usize> {
        super::rank(op, x, 2)?;
        x.expect_dtype(op, DType::F32)?;
        if x.dim(1) != self.inputs() {
            return Err(Error::ShapeMismatch {
                op,
                expected: vec![x.dim(0), self.inputs()],
                got: x.shape().to_vec(),
            });
        }
        Ok(x.dim(0))
    }

    /// [`PackedMlp::forward`] on an `x` that passed
    /// [`PackedMlp::check_input`], with the folded state when given.
    fn run(
        &self,
        op: &'static str,
        x: &Tensor,
        addend: Option<LayerAddend<'_>>,
        fold: Option<cpu::FoldState<'_>>,
    ) -> Result<Tensor> {
        let rows = x.dim(0);
        let extra = match addend {
            None => None,
            Some(a) => {
                let Some(layer) = self.layers.get(a.layer) else {
                    return Err(Error::InvalidArgument {
                        op,
                        why: format!(
                            "addend for layer {} of a {}-layer chain",
                            a.layer,
                            self.layers.len()
                        ),
                    });
                };
                a.rows.expect_shape(op, &[rows, layer.n])?;
                a.bias.expect_shape(op, &[layer.n])?;
                a.rows.expect_dtype(op, DType::F32)?;
                a.bias.expect_dtype(op, DType::F32)?;
                Some(cpu::Addend {
                    layer: a.layer,
                    rows: a.rows.as_slice::<f32>()?,
                    bias: a.bias.as_slice::<f32>()?,
                })
            }
        };
        let mut out = vec![0f32; rows * self.outputs()];
        cpu::forward(
            &self.layers,
            x.as_slice::<f32>()?,
            rows,
            extra,
            fold,
            &mut out,
        );
        Tensor::from_vec(out, &[rows, self.outputs()])
    }
}

#[cfg(test)]
mod tests;
