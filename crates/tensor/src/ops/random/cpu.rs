//! The CPU reference of [`super`]: Philox words drawn in fixed blocks keyed
//! by position, so the numbers do not depend on the thread count.

use super::keep_threshold;
use crate::philox::RngStream;

const DROP_BLOCKS: usize = 2048;

/// Fill `mask` with `scale` or 0 and, when given, `y = x ⊙ mask`, drawing one
/// word per element from `rng` (blocks keyed by position: thread-count independent).
pub(super) fn dropout_fill<T: crate::Elem>(
    x: Option<&[T]>,
    y: Option<&mut [T]>,
    mask: &mut [T],
    p: f64,
    rng: &mut RngStream,
) {
    use rayon::prelude::*;
    let thr = keep_threshold(p);
    let keep = T::from_f64_lossy(1.0 / (1.0 - p));
    let (seed, stream, offset) = (rng.seed, rng.stream, rng.offset());
    let n = mask.len();
    let chunk = DROP_BLOCKS * 4;
    let fill = |ci: usize, m: &mut [T], yo: Option<&mut [T]>| {
        let base = offset + (ci * DROP_BLOCKS) as u64;
        let mut words = [0u32; DROP_BLOCKS * 4];
        let words = &mut words[..m.len()];
        crate::philox::fill_words(seed, stream, base, words);
        // Local copies: read through the closure's references, `thr` and
        // `keep` might (for LLVM) change with each write to `m`, which keeps
        // the loop scalar with a branch that mispredicts on about every
        // fifth element. Copied, the select vectorises.
        let (thr, keep) = (thr, keep);
        for (o, &wi) in m.iter_mut().zip(words.iter()) {
            *o = if (wi >> 8) >= thr { keep } else { T::zero() };
        }
        if let (Some(xs), Some(yo)) = (x, yo) {
            let xs = &xs[ci * chunk..ci * chunk + yo.len()];
            for ((yv, &xv), &mv) in yo.iter_mut().zip(xs).zip(m.iter()) {
                *yv = xv * mv;
            }
        }
    };
    match y {
        Some(y) => mask
            .par_chunks_mut(chunk)
            .zip(y.par_chunks_mut(chunk))
            .enumerate()
            .for_each(|(ci, (m, yo))| fill(ci, m, Some(yo))),
        None => mask
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(ci, m)| fill(ci, m, None)),
    }
    rng.skip(crate::philox::blocks_for(n));
}
