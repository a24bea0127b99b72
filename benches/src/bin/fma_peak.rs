//! The machine's f32 fused-multiply-add peak: `THREADS` threads (default 2)
//! each run twelve independent FMA chains on the widest vectors the CPU has
//! (AVX-512F, else AVX2 + FMA), so nothing but the FMA units limits them.
//! Prints one JSON line: `{"bench": "fma_peak", "isa", "threads", "gflops",
//! "gflops_rounds"}` (`gflops`: the best of `ROUNDS`, default 5).
//!
//! `cargo xtask bench pytorch` runs it after each inference row, so that the
//! row's FLOP count can be set against what the cores can do at all
//! (docs/BENCHMARKS.md, "Inference against the arithmetic floor").

use std::sync::Barrier;
use std::time::Instant;

/// Iterations of the twelve-chain loop per thread and round.
const ITERS: u64 = 100_000_000;

/// The vector instructions a round runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Isa {
    Avx512,
    Avx2Fma,
}

impl Isa {
    fn detect() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Some(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Some(Isa::Avx2Fma);
            }
        }
        None
    }

    fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f",
            Isa::Avx2Fma => "avx2+fma",
        }
    }

    /// f32 lanes per vector.
    fn lanes(self) -> u64 {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2Fma => 8,
        }
    }

    /// Run `iters` iterations of twelve FMAs; returns a value that depends
    /// on every chain (so none is optimised away).
    fn run(self, iters: u64, seed: f32) -> f32 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `detect` found the features these functions enable.
            match self {
                Isa::Avx512 => unsafe { x86::chains_avx512(iters, seed) },
                Isa::Avx2Fma => unsafe { x86::chains_avx2(iters, seed) },
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (iters, seed);
            unreachable!("Isa::detect returns None off x86_64")
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `a_i ← a_i·b + c` on twelve independent registers, `iters` times.
    /// With `b` = 0.999 and `c` = 1e-7 every chain stays normal (it tends
    /// to 1e-4), so no denormal slows it down.
    macro_rules! chains {
        ($name:ident, $feat:literal, $v:ty, $set1:ident, $fma:ident, $add:ident, $first:ident) => {
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $name(iters: u64, seed: f32) -> f32 {
                let (b, c) = ($set1(0.999), $set1(1e-7));
                let mut a: [$v; 12] = [$set1(0.0); 12];
                for (i, r) in a.iter_mut().enumerate() {
                    *r = $set1(seed + i as f32);
                }
                let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7, mut a8, mut a9, mut a10, mut a11] =
                    a;
                for _ in 0..iters {
                    a0 = $fma(a0, b, c);
                    a1 = $fma(a1, b, c);
                    a2 = $fma(a2, b, c);
                    a3 = $fma(a3, b, c);
                    a4 = $fma(a4, b, c);
                    a5 = $fma(a5, b, c);
                    a6 = $fma(a6, b, c);
                    a7 = $fma(a7, b, c);
                    a8 = $fma(a8, b, c);
                    a9 = $fma(a9, b, c);
                    a10 = $fma(a10, b, c);
                    a11 = $fma(a11, b, c);
                }
                let s = $add(
                    $add($add($add(a0, a1), $add(a2, a3)), $add($add(a4, a5), $add(a6, a7))),
                    $add($add(a8, a9), $add(a10, a11)),
                );
                $first(s)
            }
        };
    }

    chains!(
        chains_avx2,
        "avx2,fma",
        __m256,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        first_256
    );
    /// The same twelve chains on 512-bit registers, in inline assembly
    /// (the AVX-512 intrinsics need a newer Rust than the workspace's
    /// `rust-version`): `zmm_i ← zmm_i·b + c`, `iters` ≥ 1 times. Returns
    /// `seed`, since the registers never leave the assembly.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn chains_avx512(iters: u64, seed: f32) -> f32 {
        let (b, c) = (0.999f32, 1e-7f32);
        // SAFETY: reads the two f32 behind `b` and `c`, writes only the
        // registers declared as outputs; the loop counter starts ≥ 1.
        unsafe {
            std::arch::asm!(
                "vbroadcastss zmm12, dword ptr [{b}]",
                "vbroadcastss zmm13, dword ptr [{c}]",
                "vbroadcastss zmm0, dword ptr [{s}]",
                "vmovaps zmm1, zmm0", "vmovaps zmm2, zmm0", "vmovaps zmm3, zmm0",
                "vmovaps zmm4, zmm0", "vmovaps zmm5, zmm0", "vmovaps zmm6, zmm0",
                "vmovaps zmm7, zmm0", "vmovaps zmm8, zmm0", "vmovaps zmm9, zmm0",
                "vmovaps zmm10, zmm0", "vmovaps zmm11, zmm0",
                "2:",
                "vfmadd132ps zmm0, zmm13, zmm12", "vfmadd132ps zmm1, zmm13, zmm12",
                "vfmadd132ps zmm2, zmm13, zmm12", "vfmadd132ps zmm3, zmm13, zmm12",
                "vfmadd132ps zmm4, zmm13, zmm12", "vfmadd132ps zmm5, zmm13, zmm12",
                "vfmadd132ps zmm6, zmm13, zmm12", "vfmadd132ps zmm7, zmm13, zmm12",
                "vfmadd132ps zmm8, zmm13, zmm12", "vfmadd132ps zmm9, zmm13, zmm12",
                "vfmadd132ps zmm10, zmm13, zmm12", "vfmadd132ps zmm11, zmm13, zmm12",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters.max(1) => _,
                b = in(reg) &b,
                c = in(reg) &c,
                s = in(reg) &seed,
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
                out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                out("zmm12") _, out("zmm13") _,
                options(nostack, readonly),
            );
        }
        seed
    }

    #[target_feature(enable = "avx")]
    fn first_256(v: __m256) -> f32 {
        _mm_cvtss_f32(_mm256_castps256_ps128(v))
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let threads = env_usize("THREADS", 2).max(1);
    let rounds = env_usize("ROUNDS", 5).max(1);
    let Some(isa) = Isa::detect() else {
        eprintln!("fma_peak: this CPU has neither AVX-512F nor AVX2 + FMA; nothing to measure");
        std::process::exit(2);
    };
    let flop_per_round = (threads as u64 * ITERS * 12 * isa.lanes() * 2) as f64;
    let mut gflops = Vec::with_capacity(rounds);
    let mut sink = 0f32;
    for _ in 0..rounds {
        // Every thread starts at the barrier; the round lasts until the
        // slowest one is done.
        let start = Barrier::new(threads + 1);
        let (secs, s) = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let start = &start;
                    scope.spawn(move || {
                        start.wait();
                        isa.run(ITERS, t as f32)
                    })
                })
                .collect();
            start.wait();
            let t0 = Instant::now();
            let s: f32 = handles
                .into_iter()
                .map(|h| h.join().expect("an FMA thread panicked"))
                .sum();
            (t0.elapsed().as_secs_f64(), s)
        });
        sink += s;
        gflops.push(flop_per_round / secs / 1e9);
    }
    let best = gflops.iter().copied().fold(0.0, f64::max);
    println!(
        "{{\"bench\":\"fma_peak\",\"isa\":\"{}\",\"threads\":{threads},\"gflops\":{best:.2},\"gflops_rounds\":[{}],\"check\":{}}}",
        isa.name(),
        gflops
            .iter()
            .map(|g| format!("{g:.2}"))
            .collect::<Vec<_>>()
            .join(","),
        if sink.is_finite() { sink } else { -1.0 }
    );
}
