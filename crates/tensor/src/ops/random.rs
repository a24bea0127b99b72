//! Random tensors and dropout masks from the counter-based Philox generator.

use crate::philox::RngStream;
use crate::{with_dtype, DType, Error, Result, Tensor};

/// A tensor of standard normals drawn from `rng` (which advances).
pub fn randn(shape: &[usize], dtype: DType, rng: &mut RngStream) -> Result<Tensor> {
    let mut t = Tensor::zeros(shape, dtype);
    with_dtype!(dtype, T, {
        rng.fill_normal::<T>(t.as_mut_slice()?);
    });
    Ok(t)
}

/// A tensor of uniforms in `(0, 1)` drawn from `rng` (which advances).
pub fn rand_uniform(shape: &[usize], dtype: DType, rng: &mut RngStream) -> Result<Tensor> {
    let mut t = Tensor::zeros(shape, dtype);
    with_dtype!(dtype, T, {
        rng.fill_uniform::<T>(t.as_mut_slice()?);
    });
    Ok(t)
}

/// An inverted-dropout mask: each element is `1/(1−p)` with probability
/// `1 − p` and `0` otherwise (element kept when its uniform draw `u ≥ p`).
pub fn dropout_mask(shape: &[usize], p: f64, dtype: DType, rng: &mut RngStream) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::InvalidArgument {
            op: "dropout_mask",
            why: format!("drop probability {p} is not in [0, 1)"),
        });
    }
    let mut t = rand_uniform(shape, dtype, rng)?;
    let keep = 1.0 / (1.0 - p);
    with_dtype!(dtype, T, {
        let (pt, kt) = (p as T, keep as T);
        for v in t.as_mut_slice::<T>()? {
            *v = if *v >= pt { kt } else { 0.0 };
        }
    });
    Ok(t)
}
