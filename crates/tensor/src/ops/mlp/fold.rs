//! Layer 0's ReLU folded into layer 1, row by row, across calls
//! (docs/PERFORMANCE.md, round 11).
//!
//! Layer 0 is `u = ReLU(x·W0ᵀ + b0)` on few inputs `k0`. With
//! `x̃ = [x, 1]`, `W̃0 = [W0 | b0]` and `D = diag(x̃·W̃0ᵀ > 0)` the row's
//! ReLU pattern, layer 1's product is
//!
//! `u·W1ᵀ = x̃·M̃ᵀ`, `M̃ = W1·D·W̃0 = Σ_{j: D_jj = 1} W1[:, j] ⊗ W̃0[j, :]`
//!
//! (`[n1, k0 + 1]`): `k0 + 1` multiply-adds per output instead of `n0`. Each
//! row keeps its `M̃` and the pattern `M̃` holds between calls. A call
//! corrects the product for the few units whose state differs from that
//! pattern (one multiply-add per output each), and past [`LAZY`] of them
//! folds their rank-one terms into `M̃` instead ([`row`]). Over the small
//! steps of an ODE the pattern rarely changes (FM: 0.13–0.19 flips per row
//! and step of 256 units; CT's noisy steps about 7).
//!
//! Every row's numbers depend on its own inputs and history only: the same
//! whatever the batch, the block a row falls in, or the thread count. They
//! are not the dense kernel's bits (another summation order, and `M̃`
//! carries the rounding of its updates), but the same sums to f32 rounding.

use super::cpu::Packed;

/// Columns of `M̃` one update pass holds in registers.
pub(super) const G: usize = 12;
/// Output chunks (of 8) one matrix-vector pass keeps in registers.
const W: usize = 8;

/// What the fold needs of layers 0 and 1, copied once at packing.
#[derive(Clone, Debug)]
pub(super) struct Fold {
    /// `x̃`'s width, `k0 + 1`, padded to a multiple of [`G`].
    pub(super) kp: usize,
    /// Layer 0's outputs, padded to a multiple of `8·W` (padded units have
    /// zero weights and bias, so they are never active).
    pub(super) n0p: usize,
    /// Layer 1's outputs, padded to a multiple of 16 (its panels).
    pub(super) n1p: usize,
    /// `W̃0` by unit: `w0x[j·kp + i]`, zero past `k0 + 1`.
    w0x: Vec<f32>,
    /// `W̃0` by input, for the pattern pass: `w0c[i·n0p + j]`, `i ≤ k0`.
    w0c: Vec<f32>,
    /// `W1`'s columns: `w1t[j·n1p + o] = W1[o, j]`, zero past `n1`.
    w1t: Vec<f32>,
}

impl Fold {
    /// The fold of `l0` (which has a ReLU) into `l1`, or `None` where it
    /// would not save work: the `x̃·M̃ᵀ` product must be at most a quarter
    /// of the dense one (`kp ≤ n0 / 4`).
    pub(super) fn new(
        w0: &[f32],
        b0: &[f32],
        l0: &Packed,
        w1: &[f32],
        l1: &Packed,
    ) -> Option<Fold> {
        let (k0, n0, n1) = (l0.k, l0.n, l1.n);
        let kp = (k0 + 1).next_multiple_of(G);
        if !l0.relu || 4 * kp > n0 {
            return None;
        }
        let n0p = n0.next_multiple_of(8 * W);
        let n1p = n1.next_multiple_of(16);
        let mut w0x = vec![0f32; n0p * kp];
        let mut w0c = vec![0f32; (k0 + 1) * n0p];
        for j in 0..n0 {
            for i in 0..=k0 {
                let v = if i < k0 { w0[j * k0 + i] } else { b0[j] };
                w0x[j * kp + i] = v;
                w0c[i * n0p + j] = v;
            }
        }
        let mut w1t = vec![0f32; n0 * n1p];
        for o in 0..n1 {
            for j in 0..n0 {
                w1t[j * n1p + o] = w1[o * n0 + j];
            }
        }
        Some(Fold {
            kp,
            n0p,
            n1p,
            w0x,
            w0c,
            w1t,
        })
    }

    /// A hash of everything a row's state depends on (the two layers'
    /// weights and the layout), so that a state is used with the weights
    /// it was built from only.
    pub(super) fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.kp, self.n0p, self.n1p).hash(&mut h);
        for v in self.w0x.iter().chain(&self.w1t) {
            v.to_bits().hash(&mut h);
        }
        h.finish()
    }

    /// Bytes of one row's ReLU pattern.
    pub(super) fn mask_bytes(&self) -> usize {
        self.n0p / 8
    }

    /// Floats of one row's `M̃` (`[n1p / 8][kp][8]`).
    pub(super) fn m_len(&self) -> usize {
        self.n1p * self.kp
    }
}

/// Units a row may differ by from the pattern its `M̃` holds before the
/// difference is folded in: each costs one multiply-add per output and
/// call while it waits, against `kp` per output to fold it.
pub(super) const LAZY: usize = 16;

/// One thread's working memory for [`row`].
#[derive(Default)]
pub(super) struct FoldScratch {
    xt: Vec<f32>,
    /// This call's pre-activations `x̃·W̃0ᵀ` and pattern.
    s: Vec<f32>,
    mask: Vec<u8>,
    /// Per unit in `units`: its `±W̃0[j, :]` row (folding) or `±s_j`
    /// (a correction).
    coef: Vec<f32>,
    /// The units where this call's pattern and `M̃`'s differ.
    units: Vec<u32>,
}

/// One row: from its input `x` (`k0` values), its pattern and `M̃` (`mask`,
/// `m`: the pattern `D_M` that `M̃` holds, not necessarily the last call's),
/// write layer 1's output `ReLU?((x̃·M̃ᵀ + Σ_Δ ±s_j·W1[:, j] + add) + bias)`
/// to `out` (`n1p` values) and OR its nonzero bits into `nonzero` (bit `j`
/// of byte `c`: output `8c + j`).
///
/// `Δ` is the set of units where this call's pattern differs from `D_M`;
/// each adds (now on) or removes (now off) its term `s_j·W1[:, j]`. When
/// `Δ` holds more than [`LAZY`] units they are folded into `M̃` instead
/// and `D_M` becomes this call's pattern, so units that flip back and
/// forth (CT's noisy steps) rarely touch `M̃`.
///
/// The caller checked [`super::cpu::available`] and every length.
#[allow(clippy::too_many_arguments)]
pub(super) fn row(
    f: &Fold,
    x: &[f32],
    mask: &mut [u8],
    m: &mut [f32],
    add: Option<&[f32]>,
    bias: &[f32],
    relu: bool,
    scratch: &mut FoldScratch,
    out: &mut [f32],
    nonzero: &mut [u8],
) {
    let kp = f.kp;
    assert_eq!(mask.len(), f.mask_bytes());
    assert_eq!(m.len(), f.m_len());
    assert!(out.len() >= f.n1p && bias.len() >= f.n1p && nonzero.len() >= f.n1p / 8);
    assert!(add.is_none_or(|a| a.len() >= f.n1p));
    assert!(x.len() < kp);
    let FoldScratch {
        xt,
        s,
        mask: now,
        coef,
        units,
    } = scratch;
    xt.clear();
    xt.extend_from_slice(x);
    // `x̃` without `M̃`'s zero padding: the padded columns stay zero, so
    // leaving them out of the sums leaves the sums as they are.
    xt.push(1.0);
    now.resize(f.mask_bytes(), 0);
    s.resize(f.n0p, 0.0);
    // SAFETY: `available()` was checked by the caller; the lengths above.
    unsafe { avx2::pattern(xt, &f.w0c, f.n0p, s, now) };
    // The patterns 64 units at a time (`mask_bytes` is a multiple of 8).
    let word = |m: &[u8], w: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&m[8 * w..8 * w + 8]);
        u64::from_le_bytes(b)
    };
    let words = f.mask_bytes() / 8;
    let differ: u32 = (0..words)
        .map(|w| (word(mask, w) ^ word(now, w)).count_ones())
        .sum();
    let fold = differ as usize > LAZY;
    units.clear();
    coef.clear();
    for w in 0..words {
        let new = word(now, w);
        let mut flips = word(mask, w) ^ new;
        while flips != 0 {
            let b = flips.trailing_zeros() as usize;
            flips &= flips - 1;
            let j = 64 * w + b;
            // The sign bit to flip where the unit is now off.
            let off = (((new >> b) & 1) as u32 ^ 1) << 31;
            units.push(j as u32);
            if fold {
                let row = &f.w0x[j * kp..(j + 1) * kp];
                coef.extend(row.iter().map(|v| f32::from_bits(v.to_bits() ^ off)));
            } else {
                coef.push(f32::from_bits(s[j].to_bits() ^ off));
            }
        }
    }
    if fold {
        mask.copy_from_slice(now);
    }
    // SAFETY: as above; every unit is below n0, so its `w1t` row exists.
    unsafe {
        let corrections = if fold {
            avx2::update(m, kp, &f.w1t, f.n1p, units, coef);
            (&[][..], &[][..])
        } else {
            (&units[..], &coef[..])
        };
        let sum = Sum {
            m,
            kp,
            xt,
            n1p: f.n1p,
            units: corrections.0,
            coef: corrections.1,
            w1t: &f.w1t,
        };
        avx2::apply(&sum, add, bias, relu, out, nonzero);
    }
}

/// Layer 1's pre-activation before its addends, for one row:
/// `x̃·M̃ᵀ + Σ_u coef[u]·W1[:, units[u]]`.
pub(super) struct Sum<'a> {
    /// `M̃`, `[n1p / 8][kp][8]`.
    pub(super) m: &'a [f32],
    pub(super) kp: usize,
    /// `x̃`, at most `kp` values (`M̃`'s padding left out).
    pub(super) xt: &'a [f32],
    /// Layer 1's padded outputs, a multiple of 16.
    pub(super) n1p: usize,
    /// The units corrected for, and their coefficients `±s_j`.
    pub(super) units: &'a [u32],
    pub(super) coef: &'a [f32],
    /// `W1`'s columns, `n1p` values per unit.
    pub(super) w1t: &'a [f32],
}

impl Sum<'_> {
    /// Whether every read of the product is inside the slices.
    pub(super) fn valid(&self) -> bool {
        self.n1p % 16 == 0
            && self.m.len() >= self.n1p * self.kp
            && self.xt.len() <= self.kp
            && self.units.len() == self.coef.len()
            && self
                .units
                .iter()
                .all(|&j| (j as usize + 1) * self.n1p <= self.w1t.len())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Sum, G, W};

    /// `acc[c] = Σ_i x[i]·mat[i·si + (c0 + c)·8 ..][..8]` for `c < N`, the
    /// sum in `i` order with one FMA per term from zero.
    ///
    /// # Safety
    /// AVX2 and FMA; every address read is inside `mat`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn gemv<const N: usize>(
        x: &[f32],
        mat: &[f32],
        si: usize,
        sc: usize,
        c0: usize,
    ) -> [__m256; N] {
        let mut acc = [_mm256_setzero_ps(); N];
        for (i, &xi) in x.iter().enumerate() {
            let b = _mm256_set1_ps(xi);
            for (c, a) in acc.iter_mut().enumerate() {
                let at = i * si + (c0 + c) * sc;
                debug_assert!(at + 8 <= mat.len());
                // SAFETY: the caller's contract.
                *a = _mm256_fmadd_ps(b, unsafe { _mm256_loadu_ps(mat.as_ptr().add(at)) }, *a);
            }
        }
        acc
    }

    /// The pre-activations `s = x̃·W̃0ᵀ` and their ReLU pattern: bit
    /// `j % 8` of `mask[j / 8]` is set where `s_j > 0`.
    ///
    /// # Safety
    /// AVX2 and FMA; `w0c` is `[xt.len()][n0p]`, `s` holds `n0p`, `mask`
    /// `n0p / 8`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn pattern(
        xt: &[f32],
        w0c: &[f32],
        n0p: usize,
        s: &mut [f32],
        mask: &mut [u8],
    ) {
        assert!(w0c.len() >= xt.len() * n0p && s.len() >= n0p && mask.len() >= n0p / 8);
        let zero = _mm256_setzero_ps();
        for c0 in (0..n0p / 8).step_by(W) {
            // SAFETY: n0p is a multiple of 8·W; the assert above.
            let v = unsafe { gemv::<W>(xt, w0c, n0p, 8, c0) };
            for (c, v) in v.iter().enumerate() {
                // SAFETY: (c0 + c)·8 + 8 ≤ n0p.
                unsafe { _mm256_storeu_ps(s.as_mut_ptr().add((c0 + c) * 8), *v) };
                mask[c0 + c] = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(*v, zero)) as u8;
            }
        }
    }

    /// `M̃ += Σ_f W1[:, units[f]] ⊗ coef[f]` for `m: [n1p / 8][kp][8]`, the
    /// units in the order given, [`G`] columns at a time in registers.
    ///
    /// # Safety
    /// AVX2 and FMA; `m` holds `n1p·kp`, `coef` `units.len()·kp`, and
    /// every unit's `n1p`-row of `w1t` exists.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn update(
        m: &mut [f32],
        kp: usize,
        w1t: &[f32],
        n1p: usize,
        units: &[u32],
        coef: &[f32],
    ) {
        assert!(m.len() >= n1p * kp && coef.len() >= units.len() * kp && kp % G == 0);
        for &j in units {
            assert!((j as usize + 1) * n1p <= w1t.len());
        }
        let mp = m.as_mut_ptr();
        for c in 0..n1p / 8 {
            for g in (0..kp).step_by(G) {
                // SAFETY: (c·kp + g + ii)·8 + 8 ≤ n1p·kp; the asserts above.
                unsafe {
                    let base = mp.add((c * kp + g) * 8);
                    let mut acc: [__m256; G] =
                        std::array::from_fn(|ii| _mm256_loadu_ps(base.add(ii * 8)));
                    for (f, &j) in units.iter().enumerate() {
                        let w = _mm256_loadu_ps(w1t.as_ptr().add(j as usize * n1p + c * 8));
                        let cf = coef.as_ptr().add(f * kp + g);
                        for (ii, a) in acc.iter_mut().enumerate() {
                            *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*cf.add(ii)), w, *a);
                        }
                    }
                    for (ii, a) in acc.iter().enumerate() {
                        _mm256_storeu_ps(base.add(ii * 8), *a);
                    }
                }
            }
        }
    }

    /// Output chunks `c0..c0 + N` (of 8): the product over `x̃` in index
    /// order with one FMA per term from zero, then the corrections in
    /// the order given.
    ///
    /// # Safety
    /// AVX2 and FMA; [`Sum::valid`]; `c0 + N ≤ sum.n1p / 8`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn outputs<const N: usize>(sum: &Sum<'_>, c0: usize) -> [__m256; N] {
        // SAFETY: `m` is [n1p / 8][kp][8] and c0 + N ≤ n1p / 8.
        let mut acc = unsafe { gemv::<N>(sum.xt, sum.m, 8, sum.kp * 8, c0) };
        for (&j, &cf) in sum.units.iter().zip(sum.coef) {
            let b = _mm256_set1_ps(cf);
            let row = j as usize * sum.n1p + c0 * 8;
            for (c, a) in acc.iter_mut().enumerate() {
                // SAFETY: the unit's row holds n1p values (`valid`).
                let w = unsafe { _mm256_loadu_ps(sum.w1t.as_ptr().add(row + 8 * c)) };
                *a = _mm256_fmadd_ps(b, w, *a);
            }
        }
        acc
    }

    /// `out = ReLU?((sum + add) + bias)` and its nonzero bits ORed into
    /// `nonzero` (one byte per 8 outputs).
    ///
    /// # Safety
    /// AVX2 and FMA; `add`, `bias` and `out` hold `sum.n1p`, `nonzero`
    /// `sum.n1p / 8`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn apply(
        sum: &Sum<'_>,
        add: Option<&[f32]>,
        bias: &[f32],
        relu: bool,
        out: &mut [f32],
        nonzero: &mut [u8],
    ) {
        let (n1p, chunks) = (sum.n1p, sum.n1p / 8);
        assert!(sum.valid());
        assert!(bias.len() >= n1p && out.len() >= n1p && nonzero.len() >= chunks);
        assert!(add.is_none_or(|a| a.len() >= n1p));
        let zero = _mm256_setzero_ps();
        let mut emit = |c0: usize, vs: &[__m256]| {
            for (c, &v) in (c0..).zip(vs) {
                // SAFETY: c < chunks; the asserts above.
                unsafe {
                    let mut v = v;
                    if let Some(a) = add {
                        v = _mm256_add_ps(v, _mm256_loadu_ps(a.as_ptr().add(8 * c)));
                    }
                    v = _mm256_add_ps(v, _mm256_loadu_ps(bias.as_ptr().add(8 * c)));
                    if relu {
                        v = _mm256_max_ps(v, zero);
                    }
                    _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), v);
                    nonzero[c] |= _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero)) as u8;
                }
            }
        };
        let mut c0 = 0;
        // SAFETY (each call): `valid` was asserted; chunks c0..c0 + N exist
        // (n1p / 8 is even).
        while c0 + W <= chunks {
            emit(c0, &unsafe { outputs::<W>(sum, c0) });
            c0 += W;
        }
        while c0 < chunks {
            emit(c0, &unsafe { outputs::<2>(sum, c0) });
            c0 += 2;
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    /// Never called: `available()` is false off x86-64.
    pub(super) unsafe fn pattern(_: &[f32], _: &[f32], _: usize, _: &mut [f32], _: &mut [u8]) {
        unreachable!("the fused MLP kernel needs x86-64 with AVX2 and FMA")
    }

    /// Never called: `available()` is false off x86-64.
    pub(super) unsafe fn update(
        _: &mut [f32],
        _: usize,
        _: &[f32],
        _: usize,
        _: &[u32],
        _: &[f32],
    ) {
        unreachable!("the fused MLP kernel needs x86-64 with AVX2 and FMA")
    }

    /// Never called: `available()` is false off x86-64.
    pub(super) unsafe fn apply(
        _: &Sum<'_>,
        _: Option<&[f32]>,
        _: &[f32],
        _: bool,
        _: &mut [f32],
        _: &mut [u8],
    ) {
        unreachable!("the fused MLP kernel needs x86-64 with AVX2 and FMA")
    }
}
