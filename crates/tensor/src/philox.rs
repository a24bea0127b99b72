//! Counter-based random numbers: Philox 4x32-10 (Salmon et al., SC'11, "Parallel
//! random numbers: as easy as 1, 2, 3").
//!
//! Every draw is a pure function of `(seed, stream, offset)`: the 64-bit seed
//! is the key, and the 128-bit counter is `[offset_lo, offset_hi, stream_lo,
//! stream_hi]`, where `offset` counts 4-word blocks. Element `i` of a fill that
//! starts at block `offset` uses lane `i % 4` of block `offset + i / 4`, so
//! the numbers do not depend on how the work is split across threads, and a
//! CUDA kernel computing the same function draws the same numbers.
//!
//! ```
//! use noprop_tensor::philox::{philox4x32_10, RngStream};
//! // Random123's known answer for a zero key and counter.
//! assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
//! let mut rng = RngStream::new(42, 7);
//! let mut a = vec![0f32; 10];
//! rng.fill_normal(&mut a);
//! assert_eq!(rng.offset(), 3); // 10 values used 3 blocks of 4
//! ```

use rayon::prelude::*;

use crate::Elem;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// One Philox 4x32 block with 10 rounds: `counter` and `key` to four 32-bit words.
#[inline]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The four words of block `block` of stream `stream` under `seed`.
#[inline]
pub fn block(seed: u64, stream: u64, block: u64) -> [u32; 4] {
    philox4x32_10(
        [
            block as u32,
            (block >> 32) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// A 32-bit word to a uniform float in `(0, 1)`: `(w >> 8 + 0.5) / 2^24`.
///
/// Never exactly 0 or 1, so `ln` in Box–Muller is finite.
#[inline(always)]
pub fn u32_to_open01(w: u32) -> f64 {
    ((w >> 8) as f64 + 0.5) * (1.0 / 16_777_216.0)
}

/// Box–Muller on two words: two independent standard normals.
#[inline(always)]
pub fn box_muller(w0: u32, w1: u32) -> (f64, f64) {
    let u1 = u32_to_open01(w0);
    let u2 = u32_to_open01(w1);
    let r = (-2.0 * u1.ln()).sqrt();
    let theta = std::f64::consts::TAU * u2;
    (r * theta.cos(), r * theta.sin())
}

const PAR_BLOCKS: usize = 4096;

/// Fill `out` with uniforms in `(0, 1)` from blocks starting at `offset`.
pub fn fill_uniform<T: Elem>(seed: u64, stream: u64, offset: u64, out: &mut [T]) {
    out.par_chunks_mut(PAR_BLOCKS * 4)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let base = offset + (ci * PAR_BLOCKS) as u64;
            for (bi, quad) in chunk.chunks_mut(4).enumerate() {
                let w = block(seed, stream, base + bi as u64);
                for (o, &wi) in quad.iter_mut().zip(w.iter()) {
                    *o = T::from_f64_lossy(u32_to_open01(wi));
                }
            }
        });
}

/// Fill `out` with standard normals from blocks starting at `offset`.
///
/// Each block gives four normals: Box–Muller on lanes (0, 1) and (2, 3).
pub fn fill_normal<T: Elem>(seed: u64, stream: u64, offset: u64, out: &mut [T]) {
    out.par_chunks_mut(PAR_BLOCKS * 4)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let base = offset + (ci * PAR_BLOCKS) as u64;
            for (bi, quad) in chunk.chunks_mut(4).enumerate() {
                let w = block(seed, stream, base + bi as u64);
                let (a, b) = box_muller(w[0], w[1]);
                let (c, d) = box_muller(w[2], w[3]);
                for (o, v) in quad.iter_mut().zip([a, b, c, d]) {
                    *o = T::from_f64_lossy(v);
                }
            }
        });
}

/// Number of Philox blocks a fill of `n` values consumes.
pub fn blocks_for(n: usize) -> u64 {
    n.div_ceil(4) as u64
}

/// A position in one random stream: `(seed, stream)` plus a block offset that
/// advances with every fill. Saving the offset in a checkpoint is enough to
/// resume the exact sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngStream {
    /// The key.
    pub seed: u64,
    /// The stream id (e.g. one per NoProp block and purpose).
    pub stream: u64,
    offset: u64,
}

impl RngStream {
    /// A stream at offset 0.
    pub fn new(seed: u64, stream: u64) -> Self {
        RngStream {
            seed,
            stream,
            offset: 0,
        }
    }

    /// A stream at a given block offset (to resume).
    pub fn at(seed: u64, stream: u64, offset: u64) -> Self {
        RngStream {
            seed,
            stream,
            offset,
        }
    }

    /// The next unused block.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Fill with standard normals and advance.
    pub fn fill_normal<T: Elem>(&mut self, out: &mut [T]) {
        fill_normal(self.seed, self.stream, self.offset, out);
        self.offset += blocks_for(out.len());
    }

    /// Fill with uniforms in `(0, 1)` and advance.
    pub fn fill_uniform<T: Elem>(&mut self, out: &mut [T]) {
        fill_uniform(self.seed, self.stream, self.offset, out);
        self.offset += blocks_for(out.len());
    }

    /// Advance by `blocks` blocks without drawing.
    pub fn skip(&mut self, blocks: u64) {
        self.offset += blocks;
    }

    /// One uniform `u64` (uses one block) — for shuffles and index draws.
    pub fn next_u64(&mut self) -> u64 {
        let w = block(self.seed, self.stream, self.offset);
        self.offset += 1;
        (w[0] as u64) | ((w[1] as u64) << 32)
    }
}

/// Lanes of the structure-of-arrays Philox kernel.
const LANES: usize = 16;

/// `LANES` consecutive blocks starting at `first`, written interleaved as
/// `out[4·i + j]` = word `j` of block `first + i` (the same layout as calling
/// [`block`] in a loop). The lane loops vectorise (32×32→64-bit multiplies).
#[inline(always)]
fn blocks_soa(seed: u64, stream: u64, first: u64, out: &mut [u32; 4 * LANES]) {
    let mut c0 = [0u32; LANES];
    let mut c1 = [0u32; LANES];
    let c2 = [stream as u32; LANES];
    let c3 = [(stream >> 32) as u32; LANES];
    for i in 0..LANES {
        let b = first + i as u64;
        c0[i] = b as u32;
        c1[i] = (b >> 32) as u32;
    }
    let (mut c2, mut c3) = (c2, c3);
    let (mut k0, mut k1) = (seed as u32, (seed >> 32) as u32);
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        for i in 0..LANES {
            let p0 = (M0 as u64) * (c0[i] as u64);
            let p1 = (M1 as u64) * (c2[i] as u64);
            let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
            let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
            let n0 = hi1 ^ c1[i] ^ k0;
            let n2 = hi0 ^ c3[i] ^ k1;
            c0[i] = n0;
            c1[i] = lo1;
            c2[i] = n2;
            c3[i] = lo0;
        }
    }
    for i in 0..LANES {
        out[4 * i] = c0[i];
        out[4 * i + 1] = c1[i];
        out[4 * i + 2] = c2[i];
        out[4 * i + 3] = c3[i];
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fill_words_avx2(seed: u64, stream: u64, first: u64, out: &mut [u32]) {
    fill_words_generic(seed, stream, first, out)
}

#[inline(always)]
fn fill_words_generic(seed: u64, stream: u64, first: u64, out: &mut [u32]) {
    let mut buf = [0u32; 4 * LANES];
    let mut chunks = out.chunks_exact_mut(4 * LANES);
    let mut b = first;
    for ch in &mut chunks {
        blocks_soa(seed, stream, b, &mut buf);
        ch.copy_from_slice(&buf);
        b += LANES as u64;
    }
    let rest = chunks.into_remainder();
    for (i, quad) in rest.chunks_mut(4).enumerate() {
        let w = block(seed, stream, b + i as u64);
        quad.copy_from_slice(&w[..quad.len()]);
    }
}

/// Raw Philox words: `out[4·i + j]` is word `j` of block `first + i` of
/// `(seed, stream)`; a trailing partial block uses its leading words.
/// Identical to calling [`block`] in a loop (uses AVX2 when available).
pub fn fill_words(seed: u64, stream: u64, first: u64, out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { fill_words_avx2(seed, stream, first, out) };
        }
    }
    fill_words_generic(seed, stream, first, out)
}
