//! Row halves: the rows of a CT/FM evaluation are independent, so on the
//! CPU a batch runs as two halves side by side, each through every layer
//! on its own core, instead of splitting each small kernel over both cores
//! (inference, the adjoint's Euler loop and its state recovery).

use std::ops::Range;

use noprop_tensor::ops;
use noprop_tensor::{Device, Tensor};

use crate::Result;

/// Rows below which a batch is not split in two.
const ROW_SPLIT_MIN: usize = 32;

/// The two row halves `0..b/2` and `b/2..b` of a batch of `b` rows on
/// `device`, or `None` where the batch stays whole (a GPU, or fewer than
/// `2·ROW_SPLIT_MIN` rows). Fixed by `b`, never by the thread count.
pub fn row_halves(b: usize, device: &Device) -> Option<[Range<usize>; 2]> {
    (device.is_cpu() && b >= 2 * ROW_SPLIT_MIN).then_some([0..b / 2, b / 2..b])
}

/// `[lo; hi]`: two halves' rows back into one batch (each half scattered
/// into its rows, then added: exact, as `v + 0` is `v`).
pub fn stack_row_halves(lo: &Tensor, hi: &Tensor) -> Result<Tensor> {
    let (h, b) = (lo.dim(0), lo.dim(0) + hi.dim(0));
    let mut z = ops::scatter_add_rows(lo, &(0..h).collect::<Vec<_>>(), b)?;
    ops::add_assign(
        &mut z,
        &ops::scatter_add_rows(hi, &(h..b).collect::<Vec<_>>(), b)?,
    )?;
    Ok(z)
}
