//! What both builds of the CUDA backend share: the driver requirement, the
//! launch-debugging switch and the allocator's counters (so that code above
//! the backend names them without knowing whether CUDA was compiled in).

use crate::{Error, Result};

/// The oldest driver the kernels run on: CUDA 13.0 (cudarc is built with
/// the `cuda-13000` bindings, and NVRTC 13 emits PTX that older drivers
/// cannot load).
pub const MIN_DRIVER_VERSION: i32 = 13_000;

/// Fail, saying what is needed, when the driver is older than
/// [`MIN_DRIVER_VERSION`]; every kernel load would otherwise fail later
/// with an opaque PTX error.
pub fn check_driver_version(version: i32) -> Result<()> {
    if version >= MIN_DRIVER_VERSION {
        return Ok(());
    }
    Err(Error::Cuda {
        op: "cuDriverGetVersion",
        why: format!(
            "the NVIDIA driver supports CUDA {}.{}, but the kernels need CUDA {}.{} or newer: \
             update the driver (R580 or later) or use --device cpu",
            version / 1000,
            (version % 1000) / 10,
            MIN_DRIVER_VERSION / 1000,
            (MIN_DRIVER_VERSION % 1000) / 10
        ),
    })
}

/// The environment variable that makes every kernel launch synchronise and
/// report a fault under the kernel's own name (`NOPROP_CUDA_SYNC=1`): slow,
/// for finding which kernel faulted.
pub const SYNC_ENV: &str = "NOPROP_CUDA_SYNC";

/// Counters of a GPU's caching allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers obtained from the driver.
    pub device_allocations: u64,
    /// Requests served from a free list.
    pub reuses: u64,
    /// Bytes held in free lists now.
    pub cached_bytes: usize,
    /// Bytes obtained from the driver and not released (in use + cached).
    pub reserved_bytes: usize,
    /// The high-water mark of `reserved_bytes`: the most device memory this
    /// pool has held at once (what `nvidia-smi` would show, less the context).
    pub peak_reserved_bytes: usize,
}

#[cfg(test)]
mod driver_tests {
    use super::*;

    #[test]
    fn drivers_older_than_cuda_13_are_refused_with_what_is_needed() {
        check_driver_version(13_000).unwrap();
        check_driver_version(13_020).unwrap();
        let e = check_driver_version(12_080).unwrap_err().to_string();
        assert!(e.contains("CUDA 12.8") && e.contains("CUDA 13.0"), "{e}");
        assert!(e.contains("--device cpu"), "{e}");
    }
}
