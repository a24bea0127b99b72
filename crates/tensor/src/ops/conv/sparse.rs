//! The backward products of one image from the nonzeros of its output
//! gradient, for the CPU convolution ([`super::cpu`]).
//!
//! In the paper's conv stack the output gradient of a convolution is mostly
//! zeros: its fused ReLU zeroes the inactive outputs, and where a 2×2 max
//! pool follows (conv1, conv3), only the pixel each window picked carries a
//! gradient, so at most a quarter of them (16 of conv3's 81 on 28×28
//! digits). With `dy_n` the image's `[OC, P]` output gradient (ReLU mask
//! applied), `col_n` its `[KK, P]` column matrix and `w` the `[OC, KK]`
//! weight, the two products of the backward pass are
//!
//! * `dw[oc, :] += Σ_{p : dy_n[oc, p] ≠ 0} dy_n[oc, p] · col_nᵀ[p, :]`, and
//! * `dcol_nᵀ[p, :] = Σ_{oc : dy_n[oc, p] ≠ 0} dy_n[oc, p] · w[oc, :]`,
//!
//! the dense GEMMs' sums with the zero terms left out. Each sum runs over
//! its nonzeros in increasing index order into one accumulator per output
//! element, so the numbers depend on the data only (never on the thread
//! count); they differ from the dense GEMM's in the last bits (another
//! order, and no zero terms).
//!
//! Leaving the zero terms out also leaves out `0 · NaN` and `0 · ∞`: a
//! non-finite input or weight whose gradient terms are all zero does not
//! turn `dw` or `dx` into NaN here, as the dense GEMM would. The forward
//! pass meets such a value first: where it reaches the loss, training
//! stops with a non-finite-loss error at that step; where it does not (a
//! max pool passed over it), this backward ignores it as the forward did.
//!
//! The rows (`col_nᵀ[p, :]`, `w[oc, :]`) are read in tiles of at most
//! [`TILE`] columns that stay in registers while a tile's sums run.

#[allow(unused_imports)]
use crate::ops::num::*;

use crate::Elem;

/// The widest column tile: 64 `f32`s are eight AVX2 registers.
const TILE: usize = 64;

/// Whether [`dw_image`]/[`dcol_image`] beat the dense GEMMs for an image
/// with output gradient `dy_n` (`[OC, P]`, ReLU mask applied) and `kk`
/// column-matrix rows: at most 30 % nonzero, and rows long enough
/// (`kk ≥ 64`) that each nonzero's work outweighs listing it. Measured with
/// `cargo bench -p noprop-benches --bench conv -- mnist` (batch 128, AVX2):
///
/// | layer (`kk`) | `dy` | dense | sparse |
/// |---|---|---:|---:|
/// | conv1 (9) | pooled, ~10 % | 6.6 ms | 11.0 ms |
/// | conv2 (288) | pooled, ~12 % | 25.8 ms | 17.8 ms |
/// | conv2 (288) | five in eight kept, ~31 % | 21.3 ms | 22.9 ms |
/// | conv3 (576) | pooled, ~12 % | 60.3 ms | 36.4 ms |
pub(super) fn worth_it<T: Elem>(dy_n: &[T], kk: usize) -> bool {
    // The rows first: the count is not needed where they decide.
    kk >= 64 && 10 * dy_n.iter().filter(|&&v| v != T::zero()).count() <= 3 * dy_n.len()
}

/// The nonzeros of an image's `[OC, P]` output gradient, listed twice: by
/// channel (for `dw`) and by pixel (for `dcol`). Buffers are kept between
/// images, so only the starts' ranges are meaningful.
#[derive(Default)]
pub(super) struct Nonzeros<T> {
    /// Per channel `oc`: `by_oc[oc_start[oc]..oc_start[oc + 1]]`, pixels increasing.
    oc_start: Vec<usize>,
    by_oc: Vec<(u32, T)>,
    /// Per pixel `p`: `by_p[p_start[p]..p_start[p + 1]]`, channels increasing.
    p_start: Vec<usize>,
    by_p: Vec<(u32, T)>,
    /// Where the next entry of each pixel goes while `by_p` is filled.
    next: Vec<usize>,
}

impl<T: Elem> Nonzeros<T> {
    /// Lists the nonzeros of `dy` (`[oc, p]`, row-major); returns how many
    /// there are.
    pub(super) fn collect(&mut self, dy: &[T], oc: usize, p: usize) -> usize {
        // Every value is written and the count advances past the nonzero
        // ones only: no branch on the data.
        if self.by_oc.len() < oc * p {
            self.by_oc.resize(oc * p, (0, T::zero()));
            self.by_p.resize(oc * p, (0, T::zero()));
        }
        self.oc_start.clear();
        self.oc_start.push(0);
        let mut len = 0;
        for row in dy.chunks(p).take(oc) {
            for (pi, &v) in row.iter().enumerate() {
                self.by_oc[len] = (pi as u32, v);
                len += usize::from(v != T::zero());
            }
            self.oc_start.push(len);
        }
        // By pixel: count, prefix sums, then fill in channel order.
        self.p_start.clear();
        self.p_start.resize(p + 1, 0);
        for &(pi, _) in &self.by_oc[..len] {
            self.p_start[pi as usize + 1] += 1;
        }
        for i in 0..p {
            self.p_start[i + 1] += self.p_start[i];
        }
        self.next.clear();
        self.next.extend_from_slice(&self.p_start[..p]);
        for c in 0..oc {
            for &(pi, v) in &self.by_oc[self.oc_start[c]..self.oc_start[c + 1]] {
                let at = &mut self.next[pi as usize];
                self.by_p[*at] = (c as u32, v);
                *at += 1;
            }
        }
        len
    }
}

/// `dw[oc, :] (+)= Σ dy_n[oc, p] · col_t[p, :]` over the nonzeros of
/// channel `oc` (`dw`: `[OC, KK]`; `col_t`: the image's `[P, KK]` column
/// matrix transposed); adds to `dw` when `accumulate`, else overwrites it.
pub(super) fn dw_image<T: Elem>(
    nz: &Nonzeros<T>,
    col_t: &[T],
    kk: usize,
    dw: &mut [T],
    accumulate: bool,
) {
    if crate::ops::isa::avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        #[cfg(target_arch = "x86_64")]
        return unsafe { dw_avx2_fma(nz, col_t, kk, dw, accumulate) };
    }
    rows_of_sums::<T, false>(&nz.oc_start, &nz.by_oc, col_t, kk, dw, accumulate)
}

/// `dcol_t[p, :] = Σ dy_n[oc, p] · w[oc, :]` over the nonzeros of pixel
/// `p` (`dcol_t`: `[P, KK]`, the transpose of `wᵀ·dy_n`; `w`: `[OC, KK]`).
pub(super) fn dcol_image<T: Elem>(nz: &Nonzeros<T>, w: &[T], kk: usize, dcol_t: &mut [T]) {
    if crate::ops::isa::avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        #[cfg(target_arch = "x86_64")]
        return unsafe { dcol_avx2_fma(nz, w, kk, dcol_t) };
    }
    rows_of_sums::<T, false>(&nz.p_start, &nz.by_p, w, kk, dcol_t, false)
}

/// `dst[c·rows + r] = src[r·cols + c]`: the transpose of a row-major
/// `[rows, cols]` (8×8 blocks in AVX registers for `f32` where the CPU has
/// AVX2).
pub(super) fn transpose<T: Elem>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == crate::DType::F32 && crate::ops::isa::avx2_fma() {
        // SAFETY: `T` is `f32` (the only `Elem` whose DTYPE is F32), so the
        // casts keep type and length; AVX is checked just above; the
        // lengths were asserted.
        return unsafe {
            let s = std::slice::from_raw_parts(src.as_ptr().cast::<f32>(), src.len());
            let d = std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<f32>(), dst.len());
            transpose_f32_avx(s, rows, cols, d)
        };
    }
    transpose_edges(src, rows, cols, dst, 0, 0);
}

/// The scalar transpose of the rows from `r_full` and of the columns from
/// `c_full` (all of it from `(0, 0)`): what the 8×8 blocks leave.
fn transpose_edges<T: Elem>(
    src: &[T],
    rows: usize,
    cols: usize,
    dst: &mut [T],
    r_full: usize,
    c_full: usize,
) {
    for r in 0..rows {
        let from = if r < r_full { c_full } else { 0 };
        for c in from..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// [`transpose`] of `f32`: each full 8×8 block as eight loads, the
/// unpack/shuffle/permute network and eight stores; the edges scalar.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn transpose_f32_avx(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let (r_full, c_full) = (rows / 8 * 8, cols / 8 * 8);
    for r0 in (0..r_full).step_by(8) {
        for c0 in (0..c_full).step_by(8) {
            // SAFETY: rows r0..r0 + 8 and columns c0..c0 + 8 lie inside
            // the `[rows, cols]` of `src` and, transposed, of `dst`, whose
            // lengths `transpose` asserted.
            unsafe {
                let s = src.as_ptr().add(r0 * cols + c0);
                let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * cols)));
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let o = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                let d = dst.as_mut_ptr().add(c0 * rows + r0);
                for (j, v) in o.iter().enumerate() {
                    _mm256_storeu_ps(d.add(j * rows), *v);
                }
            }
        }
    }
    transpose_edges(src, rows, cols, dst, r_full, c_full);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dw_avx2_fma<T: Elem>(nz: &Nonzeros<T>, col_t: &[T], kk: usize, dw: &mut [T], acc: bool) {
    rows_of_sums::<T, true>(&nz.oc_start, &nz.by_oc, col_t, kk, dw, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dcol_avx2_fma<T: Elem>(nz: &Nonzeros<T>, w: &[T], kk: usize, dcol_t: &mut [T]) {
    rows_of_sums::<T, true>(&nz.p_start, &nz.by_p, w, kk, dcol_t, false)
}

/// Output row `r` of `out` (`[starts.len() − 1, kk]`) `(+)= Σ_{(i, v) ∈
/// entries[starts[r]..starts[r + 1]]} v · src[i, :]` (`src`: `[·, kk]`),
/// tile by tile, with fused (`FMA`) or separate multiply-adds: the loop of
/// both [`dw_image`] (rows are channels) and [`dcol_image`] (pixels).
#[inline(always)]
fn rows_of_sums<T: Elem, const FMA: bool>(
    starts: &[usize],
    entries: &[(u32, T)],
    src: &[T],
    kk: usize,
    out: &mut [T],
    accumulate: bool,
) {
    let mut c0 = 0;
    for width in WIDTHS {
        while kk - c0 >= width {
            for (r, run) in starts.windows(2).enumerate() {
                let o = &mut out[r * kk + c0..r * kk + c0 + width];
                row_sum::<T, FMA>(width, &entries[run[0]..run[1]], src, kk, c0, o, accumulate);
            }
            c0 += width;
        }
    }
}

/// The column tiles' widths, widest first: [`TILE`], then 32, 16, 8 and
/// single columns for the rest of a row.
const WIDTHS: [usize; 5] = [TILE, 32, 16, 8, 1];

/// One tile of one output row: `out[..width] (+)= Σ_{(i, v) ∈ entries} v ·
/// src[i·ld + c0..][..width]`, in the order of `entries`.
#[inline(always)]
fn row_sum<T: Elem, const FMA: bool>(
    width: usize,
    entries: &[(u32, T)],
    src: &[T],
    ld: usize,
    c0: usize,
    out: &mut [T],
    accumulate: bool,
) {
    macro_rules! fixed {
        ($w:expr) => {{
            let mut acc = [T::zero(); $w];
            if accumulate {
                acc.copy_from_slice(&out[..$w]);
            }
            for &(i, v) in entries {
                let row = &src[i as usize * ld + c0..][..$w];
                if FMA {
                    for (a, &x) in acc.iter_mut().zip(row) {
                        *a = v.mul_add(x, *a);
                    }
                } else {
                    for (a, &x) in acc.iter_mut().zip(row) {
                        *a += v * x;
                    }
                }
            }
            out[..$w].copy_from_slice(&acc);
        }};
    }
    match width {
        TILE => fixed!(TILE),
        32 => fixed!(32),
        16 => fixed!(16),
        8 => fixed!(8),
        _ => fixed!(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transpose (8×8 blocks and edges) against its definition, on
    /// shapes with and without full blocks, in f32 and f64.
    #[test]
    fn transpose_is_the_transpose() {
        for (rows, cols) in [
            (1, 1),
            (3, 5),
            (8, 8),
            (16, 24),
            (9, 17),
            (81, 576),
            (576, 81),
            (7, 8),
        ] {
            let v: Vec<f64> = (0..rows * cols).map(|i| (i * 7 + 3) as f64).collect();
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            let (mut dv, mut df) = (vec![0f64; rows * cols], vec![0f32; rows * cols]);
            transpose(&v, rows, cols, &mut dv);
            transpose(&f, rows, cols, &mut df);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dv[c * rows + r],
                        v[r * cols + c],
                        "f64 {rows}x{cols} ({r}, {c})"
                    );
                    assert_eq!(
                        df[c * rows + r],
                        f[r * cols + c],
                        "f32 {rows}x{cols} ({r}, {c})"
                    );
                }
            }
        }
    }
}
