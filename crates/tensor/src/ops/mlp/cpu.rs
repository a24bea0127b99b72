//! The fused chain on the host: a 6×16 AVX2/FMA microkernel over weights
//! packed once into 16-column panels, run block by block of rows.
//!
//! For each block of [`BLOCK`] rows, each layer runs panel by panel: one
//! panel (`k × 16` weights, 16 KiB for `k = 256`) stays in L1 while every
//! 6-row tile of the block passes over it, the tile's 12 accumulators in
//! registers. The block's activations (two `BLOCK × 256` buffers) stay in
//! L2 for the next layer.

use std::borrow::Cow;

use rayon::prelude::*;

use super::fold::{Fold, FoldScratch};

/// Rows of one microkernel tile.
const MR: usize = 6;
/// Columns of one panel (two 8-lane registers).
const NR: usize = 16;
/// Rows per block: a multiple of [`MR`], small enough that the block's two
/// activation buffers and the CT/FM step weights (384 KiB) share L2.
const BLOCK: usize = 48;

/// One `k`-row of a packed panel: 16 weights, one 64-byte cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([f32; NR]);

/// One layer's weights as `n.div_ceil(16)` panels of `k` lines
/// (`panel[kk][j] = W[16·p + j, kk]`, zero past `n`), with its bias padded
/// the same way.
#[derive(Clone, Debug)]
pub(super) struct Packed {
    lines: Vec<Line>,
    bias: Vec<f32>,
    /// Inputs.
    pub(super) k: usize,
    /// Outputs.
    pub(super) n: usize,
    pub(super) relu: bool,
}

impl Packed {
    /// Pack the row-major `weight: [n, k]` and `bias: [n]`.
    pub(super) fn new(
        weight: &[f32],
        n: usize,
        k: usize,
        bias: Option<&[f32]>,
        relu: bool,
    ) -> Self {
        let panels = n.div_ceil(NR);
        let mut lines = vec![Line([0.0; NR]); panels * k];
        for p in 0..panels {
            for (kk, line) in lines[p * k..(p + 1) * k].iter_mut().enumerate() {
                for (j, v) in line.0.iter_mut().enumerate() {
                    let col = p * NR + j;
                    if col < n {
                        *v = weight[col * k + kk];
                    }
                }
            }
        }
        let mut padded = vec![0.0; panels * NR];
        if let Some(b) = bias {
            padded[..n].copy_from_slice(b);
        }
        Packed {
            lines,
            bias: padded,
            k,
            n,
            relu,
        }
    }

    fn padded(&self) -> usize {
        self.n.next_multiple_of(NR)
    }
}

/// Where a tile's outputs go: rows `i·ld` of `out` from column `col`
/// (16 wide), and the two bytes of its nonzero mask (bit `j` of byte `h`:
/// column `col + 8h + j` is not zero in some row of the tile).
struct Tile<'a> {
    out: &'a mut [f32],
    ld: usize,
    col: usize,
    nonzero: &'a mut [u8],
}

/// The extra terms of one layer (see `LayerAddend`), checked by the API.
#[derive(Clone, Copy)]
pub(super) struct Addend<'a> {
    pub(super) layer: usize,
    /// `[rows, n]`.
    pub(super) rows: &'a [f32],
    /// `[n]`.
    pub(super) bias: &'a [f32],
}

/// Whether the host runs the kernel (see the module docs).
pub(super) fn available() -> bool {
    crate::ops::isa::avx2_fma() && !crate::ops::isa::avx512f()
}

/// The per-row state of a folded call ([`super::fold`]): each row's ReLU
/// pattern (`mask_bytes` each) and its `M̃` (`m_len` floats each).
pub(super) struct FoldState<'a> {
    pub(super) fold: &'a Fold,
    pub(super) masks: &'a mut [u8],
    pub(super) m: &'a mut [f32],
}

/// One block's rows of a [`FoldState`]: their patterns and `M̃`s.
type RowState<'a> = (&'a mut [u8], &'a mut [f32]);

/// `out = chain(x)` for `x: [rows, layers[0].k]`, `out: [rows, n_last]`;
/// with `fold`, layers 0 and 1 run folded ([`super::fold`]), updating each
/// row's state. The caller checked the shapes and [`available`].
pub(super) fn forward(
    layers: &[Packed],
    x: &[f32],
    rows: usize,
    addend: Option<Addend<'_>>,
    fold: Option<FoldState<'_>>,
    out: &mut [f32],
) {
    assert!(available(), "the fused MLP kernel needs AVX2 and FMA");
    let k0 = layers[0].k;
    let n_last = layers[layers.len() - 1].n;
    assert_eq!(x.len(), rows * k0);
    assert_eq!(out.len(), rows * n_last);
    // Each layer's bias, with the addend's bias added once per call (a copy
    // for that layer only).
    let biases: Vec<Cow<'_, [f32]>> = layers
        .iter()
        .enumerate()
        .map(|(j, l)| match addend {
            Some(a) if a.layer == j => {
                let mut b = l.bias.clone();
                for (bv, &av) in b.iter_mut().zip(a.bias) {
                    *bv += av;
                }
                Cow::Owned(b)
            }
            _ => Cow::Borrowed(l.bias.as_slice()),
        })
        .collect();
    let widest = layers.iter().map(Packed::padded).max().unwrap_or(NR);
    // The addend's rows, padded to whole panels when its layer's width is
    // not a multiple of 16 (so that the kernel reads 16 values per tile row).
    let addend = addend.map(|a| {
        let n = layers[a.layer].n;
        let padded = layers[a.layer].padded();
        let rows = if n == padded {
            Cow::Borrowed(a.rows)
        } else {
            let mut v = vec![0f32; rows * padded];
            for (dst, src) in v.chunks_exact_mut(padded).zip(a.rows.chunks_exact(n)) {
                dst[..n].copy_from_slice(src);
            }
            Cow::Owned(v)
        };
        (a.layer, rows)
    });
    // Each block's part of the fold's state (`None` for every block without
    // a fold).
    let blocks = rows.div_ceil(BLOCK);
    let (fold, mut states): (Option<&Fold>, Vec<Option<RowState<'_>>>) = match fold {
        Some(FoldState { fold, masks, m }) => {
            assert_eq!(masks.len(), rows * fold.mask_bytes());
            assert_eq!(m.len(), rows * fold.m_len());
            assert!(layers.len() >= 2 && addend.as_ref().is_none_or(|a| a.0 != 0));
            let parts = masks
                .chunks_mut(BLOCK * fold.mask_bytes())
                .zip(m.chunks_mut(BLOCK * fold.m_len()))
                .map(Some)
                .collect();
            (Some(fold), parts)
        }
        None => (None, (0..blocks).map(|_| None).collect()),
    };
    out.par_chunks_mut(BLOCK * n_last)
        .zip(states.par_iter_mut())
        .enumerate()
        .for_each(|(bi, (out_block, state))| {
            let r0 = bi * BLOCK;
            let nb = out_block.len() / n_last;
            let tiles = nb.div_ceil(MR);
            // Rows past `nb` in the last tile repeat the block's last row:
            // every row of a product depends on its own row only, so the
            // repeats are computed and dropped.
            let row = |i: usize| i.min(nb - 1);
            SCRATCH.with_borrow_mut(|scratch| {
                let Scratch {
                    bufs,
                    masks,
                    idx,
                    spans,
                    fold: fold_scratch,
                } = scratch;
                let len = tiles * MR * widest;
                for b in bufs.iter_mut() {
                    if b.len() < len {
                        b.resize(len, 0.0);
                    }
                }
                for m in masks.iter_mut() {
                    if m.len() < tiles * widest / 8 {
                        m.resize(tiles * widest / 8, 0);
                    }
                }
                // Folded, layers 0 and 1 run row by row into bufs[0] and
                // masks[0], where the loop below expects layer 1's output.
                let first = match (fold, state.as_mut()) {
                    (Some(f), Some((row_masks, row_m))) => {
                        let ld = layers[1].padded();
                        let (mb, ml) = (f.mask_bytes(), f.m_len());
                        masks[0][..tiles * ld / 8].fill(0);
                        let add = match &addend {
                            Some((1, m)) => Some(&m[r0 * ld..(r0 + nb) * ld]),
                            _ => None,
                        };
                        for r in 0..nb {
                            let t = r / MR;
                            super::fold::row(
                                f,
                                &x[(r0 + r) * k0..(r0 + r + 1) * k0],
                                &mut row_masks[r * mb..(r + 1) * mb],
                                &mut row_m[r * ml..(r + 1) * ml],
                                add.map(|a| &a[r * ld..(r + 1) * ld]),
                                &biases[1],
                                layers[1].relu,
                                fold_scratch,
                                &mut bufs[0][r * ld..(r + 1) * ld],
                                &mut masks[0][t * ld / 8..(t + 1) * ld / 8],
                            );
                        }
                        // The last tile's spare rows repeat the block's last
                        // row, as the unfolded layer 0 reads them.
                        for r in nb..tiles * MR {
                            bufs[0].copy_within((nb - 1) * ld..nb * ld, r * ld);
                        }
                        2
                    }
                    _ => 0,
                };
                for (j, layer) in layers.iter().enumerate().skip(first) {
                    let ld_out = layer.padded();
                    let [src, dst] = &mut *bufs;
                    let [mask_in, mask_out] = &mut *masks;
                    let (a_base, lda): (&[f32], usize) = if j == 0 {
                        (&x[r0 * k0..(r0 + nb) * k0], k0)
                    } else {
                        (src.as_slice(), layers[j - 1].padded())
                    };
                    let extra = match &addend {
                        Some((l, m)) if *l == j => Some(&m[r0 * ld_out..(r0 + nb) * ld_out]),
                        _ => None,
                    };
                    let a_rows = |t: usize| -> [&[f32]; MR] {
                        std::array::from_fn(|i| {
                            let r = if j == 0 { row(t * MR + i) } else { t * MR + i };
                            &a_base[r * lda..r * lda + layer.k]
                        })
                    };
                    // After a ReLU, many inputs are zero in all six rows of
                    // a tile; such a tile runs over the others only (`idx`).
                    idx.clear();
                    spans.clear();
                    let after_relu = j > 0 && layers[j - 1].relu;
                    let in_bytes = lda / 8;
                    for t in 0..tiles {
                        let start = idx.len();
                        if after_relu {
                            let m = &mask_in[t * in_bytes..(t + 1) * in_bytes];
                            // SAFETY: `available()` was asserted above.
                            unsafe { avx2::indices(m, layer.k, idx) };
                        }
                        let used = idx.len() - start;
                        if !after_relu || used * SPARSE_DEN > layer.k * SPARSE_NUM {
                            idx.truncate(start);
                            spans.push(None);
                        } else {
                            spans.push(Some(start..idx.len()));
                        }
                    }
                    let a_tiles: Vec<[&[f32]; MR]> = (0..tiles).map(a_rows).collect();
                    let add_tiles: Option<Vec<[&[f32]; MR]>> = extra.map(|m| {
                        (0..tiles)
                            .map(|t| {
                                std::array::from_fn(|i| {
                                    let at = row(t * MR + i) * ld_out;
                                    &m[at..at + ld_out]
                                })
                            })
                            .collect()
                    });
                    for p in 0..ld_out / NR {
                        let panel = &layer.lines[p * layer.k..(p + 1) * layer.k];
                        let bias = &biases[j][p * NR..(p + 1) * NR];
                        for (t, (a, out)) in a_tiles
                            .iter()
                            .zip(dst.chunks_exact_mut(MR * ld_out))
                            .enumerate()
                        {
                            let only = spans[t].clone().map(|r| &idx[r]);
                            let add = add_tiles.as_ref().map(|v| &v[t]);
                            let at = t * (ld_out / 8) + p * 2;
                            let tile = Tile {
                                out,
                                ld: ld_out,
                                col: p * NR,
                                nonzero: &mut mask_out[at..at + 2],
                            };
                            // SAFETY: `available()` was asserted above; every
                            // slice has the length `tile` asks for.
                            unsafe { avx2::tile(a, panel, only, bias, add, layer.relu, tile) };
                        }
                    }
                    bufs.swap(0, 1);
                    masks.swap(0, 1);
                }
                // The last layer's output is in bufs[0] now.
                let last = layers[layers.len() - 1].padded();
                for (i, o) in out_block.chunks_exact_mut(n_last).enumerate() {
                    o.copy_from_slice(&bufs[0][i * last..i * last + n_last]);
                }
            });
        });
}

/// A tile runs over its nonzero inputs only when they are at most
/// `SPARSE_NUM / SPARSE_DEN` of the layer's inputs (the indexed loop reads
/// one index more per step than the dense one).
const SPARSE_NUM: usize = 7;
const SPARSE_DEN: usize = 8;

/// One thread's working memory, kept between calls (1,000 steps of
/// inference would otherwise allocate and clear it per block).
#[derive(Default)]
struct Scratch {
    /// The block's activations, in and out. Every value a layer reads was
    /// written by the layer before in the same block, so what a buffer
    /// held before never matters.
    bufs: [Vec<f32>; 2],
    /// Per tile, one bit per output column: set where some row of the
    /// tile is not zero (the layer's output, the next layer's input; in and
    /// out like `bufs`).
    masks: [Vec<u8>; 2],
    /// The current layer's nonzero input indices, tile after tile.
    idx: Vec<u32>,
    /// Each tile's part of `idx`, or `None` for the dense loop.
    spans: Vec<Option<std::ops::Range<usize>>>,
    /// What a folded row needs ([`super::fold`]).
    fold: FoldScratch,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Line, Tile, MR, NR};

    /// One 6×16 tile: `out[i][j] = ReLU?((Σ_kk a[i][kk]·panel[kk][j] +
    /// add[i][j]) + bias[j])`, the sum in `kk` order with one FMA per term
    /// from zero. With `only`, the sum runs over those `kk` (ascending)
    /// alone: the caller drops only terms whose `a[i][kk]` are zero in
    /// all six rows, and adding `0·w` leaves a sum as it was, so the
    /// result is the same.
    ///
    /// # Safety
    /// The host must have AVX2 and FMA. Every `a[i]` holds `panel.len()`
    /// values; `bias` holds 16, every `add[i]` 16 from `col`, and `out`
    /// six rows of `ld` with 16 from `col`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(
        a: &[&[f32]; MR],
        panel: &[Line],
        only: Option<&[u32]>,
        bias: &[f32],
        add: Option<&[&[f32]; MR]>,
        relu: bool,
        to: Tile<'_>,
    ) {
        let k = panel.len();
        let Tile {
            out,
            ld,
            col,
            nonzero,
        } = to;
        assert!(nonzero.len() >= 2 && bias.len() >= NR);
        assert!(out.len() >= (MR - 1) * ld + col + NR);
        for i in 0..MR {
            assert!(a[i].len() >= k);
            assert!(add.is_none_or(|m| m[i].len() >= col + NR));
        }
        let ap: [*const f32; MR] = std::array::from_fn(|i| a[i].as_ptr());
        let mut c = [[_mm256_setzero_ps(); 2]; MR];
        match only {
            None => {
                for (kk, line) in panel.iter().enumerate() {
                    // SAFETY: a line is 64-byte aligned and holds 16
                    // floats; kk < k and every row holds k values.
                    unsafe { step(&mut c, &ap, kk, line) };
                }
            }
            Some(only) => {
                for &kk in only {
                    let kk = kk as usize;
                    // SAFETY: as above, with kk < k checked by the index.
                    unsafe { step(&mut c, &ap, kk, &panel[kk]) };
                }
            }
        }
        // SAFETY: the lengths asserted above.
        unsafe {
            let bv = [
                _mm256_loadu_ps(bias.as_ptr()),
                _mm256_loadu_ps(bias.as_ptr().add(8)),
            ];
            let zero = _mm256_setzero_ps();
            let mut nz = [0u8; 2];
            for (i, ci) in c.iter().enumerate() {
                let o = out.as_mut_ptr().add(i * ld + col);
                for h in 0..2 {
                    let mut v = ci[h];
                    if let Some(m) = add {
                        v = _mm256_add_ps(v, _mm256_loadu_ps(m[i].as_ptr().add(col + 8 * h)));
                    }
                    v = _mm256_add_ps(v, bv[h]);
                    if relu {
                        v = _mm256_max_ps(v, zero);
                    }
                    _mm256_storeu_ps(o.add(8 * h), v);
                    nz[h] |= _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero)) as u8;
                }
            }
            nonzero[..2].copy_from_slice(&nz);
        }
    }

    /// `c[i] += a[i][kk]·line` for the six rows: two 8-lane FMAs each.
    ///
    /// # Safety
    /// AVX2 and FMA; every `a[i]` is valid at `kk`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn step(c: &mut [[__m256; 2]; MR], a: &[*const f32; MR], kk: usize, line: &Line) {
        // SAFETY: a line is 64-byte aligned and holds 16 floats; the
        // caller's contract for `a`.
        unsafe {
            let b0 = _mm256_load_ps(line.0.as_ptr());
            let b1 = _mm256_load_ps(line.0.as_ptr().add(8));
            for i in 0..MR {
                let av = _mm256_broadcast_ss(&*a[i].add(kk));
                c[i][0] = _mm256_fmadd_ps(av, b0, c[i][0]);
                c[i][1] = _mm256_fmadd_ps(av, b1, c[i][1]);
            }
        }
    }

    /// Append to `idx` every input `kk < k` (ascending) whose bit is set
    /// in `mask` (bit `kk % 8` of byte `kk / 8`), eight at a time from
    /// [`LANES`].
    ///
    /// # Safety
    /// The host must have AVX2; `mask` holds at least `k.div_ceil(8)` bytes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn indices(mask: &[u8], k: usize, idx: &mut Vec<u32>) {
        let bytes = k.div_ceil(8);
        assert!(mask.len() >= bytes);
        // Room for every index plus one spare store of eight.
        idx.reserve(k + 8);
        let mut len = idx.len();
        // SAFETY: at most `k` indices are written, each store of eight
        // starting below `len + k`, inside the reserved `k + 8`; every
        // element below the final `len` was written.
        unsafe {
            let base = idx.as_mut_ptr();
            for (c, &byte) in mask[..bytes].iter().enumerate() {
                let keep = if 8 * c + 8 > k {
                    (1u16 << (k - 8 * c)) - 1
                } else {
                    0xff
                };
                let b = byte & keep as u8;
                let lanes = _mm256_loadu_si256(LANES[b as usize].as_ptr().cast());
                let v = _mm256_add_epi32(lanes, _mm256_set1_epi32(8 * c as i32));
                _mm256_storeu_si256(base.add(len).cast(), v);
                len += b.count_ones() as usize;
            }
            idx.set_len(len);
        }
    }

    /// For each byte `b`, the positions of its set bits, ascending (the
    /// rest zero).
    static LANES: [[u32; 8]; 256] = {
        let mut t = [[0u32; 8]; 256];
        let mut b = 0;
        while b < 256 {
            let (mut bit, mut n) = (0, 0);
            while bit < 8 {
                if b & (1 << bit) != 0 {
                    t[b][n] = bit as u32;
                    n += 1;
                }
                bit += 1;
            }
            b += 1;
        }
        t
    };
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    use super::{Line, Tile, MR};

    /// Never called: `available()` is false off x86-64.
    pub(super) unsafe fn indices(_: &[u8], _: usize, _: &mut Vec<u32>) {
        unreachable!("the fused MLP kernel needs x86-64 with AVX2 and FMA")
    }

    /// Never called: `available()` is false off x86-64.
    pub(super) unsafe fn tile(
        _: &[&[f32]; MR],
        _: &[Line],
        _: Option<&[u32]>,
        _: &[f32],
        _: Option<&[&[f32]; MR]>,
        _: bool,
        _: Tile<'_>,
    ) {
        unreachable!("the fused MLP kernel needs x86-64 with AVX2 and FMA")
    }
}
