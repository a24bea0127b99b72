//! [`CudaDevice`]: one GPU (its primary context, compiled kernels and
//! caching allocator, shared process-wide per ordinal) plus the stream a
//! handle launches on; the driver probes that make opening one a typed
//! error instead of a panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};

use super::alloc::{DeviceBuffer, Pool};
use super::info::{check_driver_version, PoolStats};
use super::module;

use crate::{Error, Result};

/// Whether the CUDA driver library (`libcuda.so.1`) can be loaded.
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Whether cuBLAS (`libcublas.so.13`) can be loaded.
pub fn cublas_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { cudarc::cublas::sys::is_culib_present() }
}

/// Number of CUDA devices, or why there are none usable.
pub fn device_count() -> Result<usize> {
    if !driver_available() {
        return Err(Error::CudaLibraryMissing {
            lib: "cuda",
            why: "libcuda.so.1 (the NVIDIA driver) is not installed or not on the library path"
                .into(),
        });
    }
    let n = CudaContext::device_count().map_err(|e| Error::Cuda {
        op: "cuDeviceGetCount",
        why: e.to_string(),
    })?;
    Ok(n.max(0) as usize)
}

/// The CUDA version the installed driver supports, as `1000·major +
/// 10·minor` (`cuDriverGetVersion`).
pub fn driver_version() -> Result<i32> {
    if !driver_available() {
        return Err(Error::CudaLibraryMissing {
            lib: "cuda",
            why: "libcuda.so.1 (the NVIDIA driver) is not installed or not on the library path"
                .into(),
        });
    }
    let mut v: std::ffi::c_int = 0;
    // SAFETY: libcuda is present (checked above, so cudarc's lazy loader
    // does not panic), and the call only writes the version to `v`.
    let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    if r != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
        return Err(Error::Cuda {
            op: "cuDriverGetVersion",
            why: format!("{r:?}"),
        });
    }
    Ok(v)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What all handles on one GPU share.
struct Shared {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    /// NVRTC target, e.g. `compute_90`.
    arch: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<&'static str, CudaFunction>>,
    pool: Arc<Pool>,
    cublas: bool,
}

/// One stream and the cuBLAS handle bound to it.
struct Lane {
    stream: Arc<CudaStream>,
    blas: OnceLock<std::result::Result<CudaBlas, String>>,
}

/// A handle to one CUDA GPU and one of its streams.
///
/// Cloning is cheap and keeps the stream; [`CudaDevice::new`] returns a
/// handle on the context's default stream. Two handles are equal when they
/// refer to the same GPU, whatever their streams.
#[derive(Clone)]
pub struct CudaDevice {
    shared: Arc<Shared>,
    lane: Arc<Lane>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.shared.ordinal)
            .field("arch", &self.shared.arch)
            .field("stream", &self.lane.stream.cu_stream())
            .finish()
    }
}

impl PartialEq for CudaDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for CudaDevice {}

static DEVICES: OnceLock<Mutex<HashMap<usize, CudaDevice>>> = OnceLock::new();

impl CudaDevice {
    /// Open CUDA device `ordinal` (shared process-wide: kernels compile once).
    ///
    /// Errors, never panics: [`Error::CudaLibraryMissing`] without a driver
    /// or NVRTC, [`Error::CudaNoDevice`] when the ordinal does not exist,
    /// [`Error::Cuda`] when the context cannot be created.
    pub fn new(ordinal: usize) -> Result<Self> {
        let mut devices = lock(DEVICES.get_or_init(Default::default));
        if let Some(d) = devices.get(&ordinal) {
            return Ok(d.clone());
        }
        let count = device_count()?;
        check_driver_version(driver_version()?)?;
        if ordinal >= count {
            return Err(Error::CudaNoDevice { ordinal, count });
        }
        if !module::nvrtc_available() {
            return Err(Error::CudaLibraryMissing {
                lib: "nvrtc",
                why: "libnvrtc.so.13 is needed to compile the kernels: `pip install \
                      nvidia-cuda-nvrtc==13.0.88` and add site-packages/nvidia/cu13/lib to \
                      LD_LIBRARY_PATH"
                    .into(),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| Error::Cuda {
            op: "CudaContext::new",
            why: e.to_string(),
        })?;
        let (major, minor) = ctx.compute_capability().map_err(|e| Error::Cuda {
            op: "compute_capability",
            why: e.to_string(),
        })?;
        let stream = ctx.default_stream();
        let dev = CudaDevice {
            shared: Arc::new(Shared {
                ordinal,
                ctx,
                arch: format!("compute_{major}{minor}"),
                modules: Mutex::new(HashMap::new()),
                funcs: Mutex::new(HashMap::new()),
                pool: Arc::new(Pool::default()),
                cublas: cublas_available(),
            }),
            lane: Arc::new(Lane {
                stream,
                blas: OnceLock::new(),
            }),
        };
        devices.insert(ordinal, dev.clone());
        Ok(dev)
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.shared.ordinal
    }

    /// The GPU's name as the driver reports it.
    pub fn name(&self) -> Result<String> {
        self.shared.ctx.name().map_err(|e| Error::Cuda {
            op: "cuDeviceGetName",
            why: e.to_string(),
        })
    }

    /// A handle on the same GPU with a new stream of its own (kernels, module
    /// cache and allocator are shared). Give each NoProp-DT block one so that
    /// blocks run concurrently; cudarc orders work on shared buffers across
    /// streams with events.
    pub fn new_stream(&self) -> Result<CudaDevice> {
        let stream = self.shared.ctx.new_stream().map_err(|e| Error::Cuda {
            op: "cuStreamCreate",
            why: e.to_string(),
        })?;
        Ok(CudaDevice {
            shared: Arc::clone(&self.shared),
            lane: Arc::new(Lane {
                stream,
                blas: OnceLock::new(),
            }),
        })
    }

    /// Wait until all work queued on this handle's stream has finished.
    pub fn synchronize(&self) -> Result<()> {
        self.lane.stream.synchronize().map_err(|e| Error::Cuda {
            op: "cuStreamSynchronize",
            why: e.to_string(),
        })
    }

    /// Make this handle's stream wait for the work queued so far on `other`'s
    /// stream (no host synchronisation).
    pub fn wait_for(&self, other: &CudaDevice) -> Result<()> {
        self.lane
            .stream
            .join(&other.lane.stream)
            .map_err(|e| Error::Cuda {
                op: "cuStreamWaitEvent",
                why: e.to_string(),
            })
    }

    /// The caching allocator's counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.shared.pool.stats()
    }

    /// Release cached, unused device buffers to the driver.
    pub fn empty_cache(&self) {
        self.shared.pool.empty_cache()
    }

    /// The cudarc stream of this handle.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.lane.stream
    }

    /// A device buffer of `len` elements from the caching allocator.
    pub fn alloc<T: cudarc::driver::DeviceRepr>(&self, len: usize) -> Result<DeviceBuffer<T>> {
        self.shared.pool.alloc(&self.lane.stream, len)
    }

    /// The cuBLAS handle of this stream, or `None` when cuBLAS cannot be
    /// loaded or its handle cannot be created (GEMM then uses the tiled
    /// fallback kernel; a failed creation is reported once on stderr).
    pub(crate) fn blas(&self) -> Result<Option<&CudaBlas>> {
        if !self.shared.cublas {
            return Ok(None);
        }
        let b = self.lane.blas.get_or_init(|| {
            CudaBlas::new(Arc::clone(&self.lane.stream)).map_err(|e| format!("{e:?}"))
        });
        match b {
            Ok(b) => Ok(Some(b)),
            Err(e) => {
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!(
                        "warning: cublasCreate failed ({e}); GEMM falls back to the tiled CUDA kernel"
                    );
                }
                Ok(None)
            }
        }
    }

    /// The compiled module of kernel file `file` (compiled and loaded on first use).
    fn module(&self, file: &'static str) -> Result<Arc<CudaModule>> {
        let mut modules = lock(&self.shared.modules);
        if let Some(m) = modules.get(file) {
            return Ok(Arc::clone(m));
        }
        let ptx = module::compile_ptx(file, Some(&self.shared.arch))?;
        let m = self.shared.ctx.load_module(ptx).map_err(|e| Error::Cuda {
            op: "cuModuleLoadData",
            why: format!("{file}: {e}"),
        })?;
        modules.insert(file, Arc::clone(&m));
        Ok(m)
    }

    /// Kernel `name` of kernel file `file`, compiling and loading the file on
    /// first use.
    pub(crate) fn func(&self, file: &'static str, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = lock(&self.shared.funcs).get(name) {
            return Ok(f.clone());
        }
        let f = self
            .module(file)?
            .load_function(name)
            .map_err(|e| Error::Cuda {
                op: "cuModuleGetFunction",
                why: format!("{file}::{name}: {e}"),
            })?;
        lock(&self.shared.funcs).insert(name, f.clone());
        Ok(f)
    }

    /// Compile and load every kernel file now (instead of at first use).
    pub fn warm_up(&self) -> Result<()> {
        for (file, _) in module::kernel_sources() {
            self.module(file)?;
        }
        Ok(())
    }
}
