//! Parameter initialisation, PyTorch's defaults, drawn on the host.
//!
//! Each tensor is drawn with ndarray-rand from a ChaCha8 generator seeded by
//! `(seed, parameter name)` (FNV-1a of the name mixed into the seed), so a
//! parameter's initial value depends only on the run seed and its name — not
//! on construction order — and ChaCha8's output is fixed by its specification.

use ndarray::{ArrayD, IxDyn};
use ndarray_rand::rand_distr::Uniform;
use ndarray_rand::RandomExt;
use noprop_tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A deterministic generator for parameter `name` under `seed`.
pub fn rng_for(seed: u64, name: &str) -> ChaCha8Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h.rotate_left(17))
}

/// `U(−bound, bound)` of `shape`, as an `f32` tensor.
pub fn uniform(shape: &[usize], bound: f64, seed: u64, name: &str) -> Tensor {
    if bound <= 0.0 || shape.iter().product::<usize>() == 0 {
        return Tensor::zeros(shape, noprop_tensor::DType::F32);
    }
    let mut rng = rng_for(seed, name);
    let dist = Uniform::new(-bound as f32, bound as f32).expect("bound > 0 checked above");
    let a: ArrayD<f32> = ArrayD::random_using(IxDyn(shape), dist, &mut rng);
    Tensor::from_ndarray(&a)
}

/// PyTorch's default weight init, Kaiming-uniform with `a = √5`:
/// `U(±gain·√(3/fan_in))` with `gain = √(2/(1+a²))`, i.e. `U(±1/√fan_in)`.
pub fn kaiming_uniform_a_sqrt5(shape: &[usize], fan_in: usize, seed: u64, name: &str) -> Tensor {
    let gain = (2.0f64 / (1.0 + 5.0)).sqrt();
    let bound = gain * (3.0 / fan_in.max(1) as f64).sqrt();
    uniform(shape, bound, seed, name)
}

/// PyTorch's default bias init: `U(±1/√fan_in)`.
pub fn bias_uniform(shape: &[usize], fan_in: usize, seed: u64, name: &str) -> Tensor {
    uniform(shape, 1.0 / (fan_in.max(1) as f64).sqrt(), seed, name)
}
