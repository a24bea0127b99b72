//! What every op family's `cuda.rs` uses to launch its kernels: the
//! [`launch!`] macro, launch geometries and small host-to-device helpers.
//!
//!
//! Shapes, dtypes and devices are checked once, in the op's API
//! (`ops/<family>/mod.rs`); a `cuda.rs` function trusts them and only
//! converts sizes to the kernels' 32-bit arguments.

use std::sync::OnceLock;

use cudarc::driver::LaunchConfig;

use super::tensor::fits_u32;
use super::{CudaDevice, DeviceBuffer, SYNC_ENV};
use crate::{Error, Result};

/// Launch kernel `$name` of file `$file` on `$dev`'s stream with `$cfg`
/// (an `Option<LaunchConfig>`: `None` launches nothing) and the arguments.
macro_rules! launch_kernel {
    ($dev:expr, $file:literal, $name:literal, $cfg:expr; $($arg:expr),* $(,)?) => {{
        if let Some(cfg) = $cfg {
            let f = $dev.func($file, $name)?;
            let stream = $dev.stream().clone();
            let mut b = stream.launch_builder(&f);
            $( b.arg($arg); )*
            // SAFETY: the arguments match the kernel's parameter list in
            // `$file` one for one (pointers, then 32-bit sizes, floats and
            // flags as declared), and the sizes passed bound every index the
            // kernel touches inside the buffers, which the caller checked.
            unsafe { b.launch(cfg) }.map_err(|e| Error::CudaLaunch {
                kernel: $name,
                why: e.to_string(),
            })?;
            if $crate::cuda::launch::sync_launches() {
                stream.synchronize().map_err(|e| Error::CudaLaunch {
                    kernel: $name,
                    why: format!("failed while running ({}=1 synchronises after every launch): {e}", $crate::cuda::SYNC_ENV),
                })?;
            }
        }
    }};
}
pub(crate) use launch_kernel as launch;

/// `n` as a 32-bit kernel argument, or a typed error when it does not fit.
pub(crate) fn u32_of(op: &'static str, n: usize) -> Result<u32> {
    fits_u32(op, &[n], n)
}

/// Copy host indices to a new device buffer of `u32`.
pub(crate) fn upload_u32(
    dev: &CudaDevice,
    op: &'static str,
    v: &[usize],
) -> Result<DeviceBuffer<u32>> {
    let host: Vec<u32> = v.iter().map(|&i| u32_of(op, i)).collect::<Result<_>>()?;
    let mut buf = dev.alloc::<u32>(host.len())?;
    if !host.is_empty() {
        let stream = dev.stream().clone();
        let mut view = buf.view_mut()?;
        stream
            .memcpy_htod(&host, &mut view)
            .map_err(|e| Error::Cuda {
                op: "cuMemcpyHtoDAsync",
                why: e.to_string(),
            })?;
    }
    Ok(buf)
}

/// Threads per block of the 1-D kernels (`NP_BLOCK` in `common.cuh`).
pub(crate) const BLOCK: u32 = 256;

/// A 1-D launch over `n` items (grid-stride kernels), or `None` when `n` is 0.
pub(crate) fn cfg_1d(n: usize) -> Option<LaunchConfig> {
    if n == 0 {
        return None;
    }
    let blocks = n.div_ceil(BLOCK as usize).min(1 << 20) as u32;
    Some(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// One block of [`BLOCK`] threads per row, for `rows` rows.
pub(crate) fn cfg_rows(rows: usize) -> Option<LaunchConfig> {
    if rows == 0 {
        return None;
    }
    Some(LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Whether [`SYNC_ENV`] is set to `1` (read once per process).
pub(crate) fn sync_launches() -> bool {
    static SYNC: OnceLock<bool> = OnceLock::new();
    *SYNC.get_or_init(|| std::env::var(SYNC_ENV).as_deref() == Ok("1"))
}
