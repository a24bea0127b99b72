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

    /// `a_i ← a_i·b + c` on twelve independent registers, `iters` times
    /// (the inner loop over the array unrolls into twelve `vfmadd` on
    /// registers). With `b` = 0.999 and `c` = 1e-7 every chain stays normal
    /// (it tends to 1e-4), so no denormal slows it down.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn chains_avx2(iters: u64, seed: f32) -> f32 {
        let (b, c) = (_mm256_set1_ps(0.999), _mm256_set1_ps(1e-7));
        let mut a = [_mm256_setzero_ps(); 12];
        for (i, r) in a.iter_mut().enumerate() {
            *r = _mm256_set1_ps(seed + i as f32);
        }
        for _ in 0..iters {
            for r in &mut a {
                *r = _mm256_fmadd_ps(*r, b, c);
            }
        }
        let s = a
            .iter()
            .fold(_mm256_setzero_ps(), |s, &r| _mm256_add_ps(s, r));
        _mm_cvtss_f32(_mm256_castps256_ps128(s))
    }

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
