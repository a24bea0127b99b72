//! A caching device allocator.
//!
//! `cuMemAlloc` and `cuMemFree` synchronise and cost microseconds, and a
//! training step frees and re-allocates the same buffers every mini-batch.
//! Buffers are therefore rounded up to a size class and, when dropped, go
//! back to a free list of their class instead of to the driver; the next
//! request of that class takes one from the list. After the first step the
//! steady state allocates nothing on the device.
//!
//! Size classes: at least 1 KiB, powers of two up to 4 MiB, then multiples
//! of 4 MiB (so a large buffer wastes at most 4 MiB).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaSlice, CudaStream, CudaView, CudaViewMut, DeviceRepr};

use super::info::PoolStats;
use crate::{Error, Result};

const MIN_CLASS: usize = 1 << 10;
const POW2_LIMIT: usize = 4 << 20;

/// The byte size a request of `bytes` is rounded up to.
pub fn size_class(bytes: usize) -> usize {
    if bytes <= MIN_CLASS {
        MIN_CLASS
    } else if bytes <= POW2_LIMIT {
        bytes.next_power_of_two()
    } else {
        bytes.div_ceil(POW2_LIMIT) * POW2_LIMIT
    }
}

/// Free lists of device buffers, keyed by size class in bytes.
#[derive(Debug, Default)]
pub struct Pool {
    free: Mutex<HashMap<usize, Vec<CudaSlice<u8>>>>,
    stats: Mutex<PoolStats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves the lists valid (push/pop only).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// The counters so far.
    pub fn stats(&self) -> PoolStats {
        *lock(&self.stats)
    }

    /// Release every cached (unused) buffer to the driver.
    pub fn empty_cache(&self) {
        let drained: Vec<CudaSlice<u8>> = lock(&self.free).drain().flat_map(|(_, v)| v).collect();
        let mut st = lock(&self.stats);
        for s in &drained {
            st.cached_bytes -= s.len();
            st.reserved_bytes -= s.len();
        }
        drop(st);
        drop(drained);
    }

    fn take(&self, class: usize) -> Option<CudaSlice<u8>> {
        let s = lock(&self.free).get_mut(&class).and_then(|v| v.pop());
        if s.is_some() {
            let mut st = lock(&self.stats);
            st.reuses += 1;
            st.cached_bytes -= class;
        }
        s
    }

    fn give_back(&self, s: CudaSlice<u8>) {
        let class = s.len();
        lock(&self.free).entry(class).or_default().push(s);
        lock(&self.stats).cached_bytes += class;
    }

    /// A buffer of `len` elements of `T` (contents unspecified) for `stream`.
    pub fn alloc<T: DeviceRepr>(
        self: &Arc<Self>,
        stream: &Arc<CudaStream>,
        len: usize,
    ) -> Result<DeviceBuffer<T>> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or(Error::InvalidArgument {
                op: "cuda alloc",
                why: format!("{len} elements overflow usize bytes"),
            })?;
        let class = size_class(bytes);
        let raw = match self.take(class) {
            Some(s) => s,
            None => {
                // SAFETY: the memory is uninitialised; every op writes a
                // buffer before reading it (or zeroes it explicitly).
                let first = unsafe { stream.alloc::<u8>(class) };
                let s = match first {
                    Ok(s) => s,
                    Err(_) => {
                        // Out of memory, maybe because of cached buffers:
                        // free them, wait until the frees have completed on
                        // the device, and retry.
                        self.empty_cache();
                        stream.synchronize().map_err(|e| Error::Cuda {
                            op: "cuStreamSynchronize",
                            why: format!("after freeing the cache on out-of-memory: {e}"),
                        })?;
                        // SAFETY: as above.
                        unsafe { stream.alloc::<u8>(class) }.map_err(|e| Error::Cuda {
                            op: "cuMemAlloc",
                            why: format!("{class} bytes: {e}"),
                        })?
                    }
                };
                let mut st = lock(&self.stats);
                st.device_allocations += 1;
                st.reserved_bytes += class;
                st.peak_reserved_bytes = st.peak_reserved_bytes.max(st.reserved_bytes);
                s
            }
        };
        Ok(DeviceBuffer {
            raw: ManuallyDrop::new(raw),
            len,
            pool: Arc::clone(self),
            _t: PhantomData,
        })
    }
}

/// `len` elements of `T` in device memory, returned to its [`Pool`] on drop.
#[derive(Debug)]
pub struct DeviceBuffer<T> {
    raw: ManuallyDrop<CudaSlice<u8>>,
    len: usize,
    pool: Arc<Pool>,
    _t: PhantomData<T>,
}

impl<T: DeviceRepr> DeviceBuffer<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw bytes (the whole size class), for kernel arguments.
    pub(crate) fn raw(&self) -> &CudaSlice<u8> {
        &self.raw
    }

    /// The raw bytes, mutably, for kernel arguments that are written.
    pub(crate) fn raw_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.raw
    }

    /// The `len` elements as a typed view.
    pub(crate) fn view(&self) -> Result<CudaView<'_, T>> {
        // SAFETY: the class holds at least len·size_of::<T>() bytes and T is
        // plain data (DeviceRepr).
        unsafe { self.raw.transmute::<T>(self.len) }.ok_or(Error::Cuda {
            op: "DeviceBuffer::view",
            why: "buffer smaller than its length".into(),
        })
    }

    /// The `len` elements as a typed mutable view.
    pub(crate) fn view_mut(&mut self) -> Result<CudaViewMut<'_, T>> {
        let len = self.len;
        // SAFETY: as in `view`.
        unsafe { self.raw.transmute_mut::<T>(len) }.ok_or(Error::Cuda {
            op: "DeviceBuffer::view_mut",
            why: "buffer smaller than its length".into(),
        })
    }
}

impl<T> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        // SAFETY: `raw` is taken exactly once, here, and never used again.
        let raw = unsafe { ManuallyDrop::take(&mut self.raw) };
        self.pool.give_back(raw);
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up() {
        assert_eq!(size_class(0), 1024);
        assert_eq!(size_class(1024), 1024);
        assert_eq!(size_class(1025), 2048);
        assert_eq!(size_class(4 << 20), 4 << 20);
        assert_eq!(size_class((4 << 20) + 1), 8 << 20);
        assert_eq!(size_class((9 << 20) + 3), 12 << 20);
    }
}
