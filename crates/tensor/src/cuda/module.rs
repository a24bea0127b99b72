//! Kernel sources and their NVRTC compilation.
//!
//! Every op family's `.cu` file (`src/ops/<family>/<family>.cu`) is embedded with
//! `include_str!`, prefixed with `common.cuh`, compiled to PTX by NVRTC the
//! first time one of its kernels is launched on a device, and cached for the
//! rest of the process (see [`CudaDevice`](super::CudaDevice)).

use cudarc::nvrtc::{self, CompileError, CompileOptions, Ptx};

use crate::{Error, Result};

/// Helpers prepended to every kernel file.
const COMMON: &str = include_str!("common.cuh");

/// The kernel files: `(file name, source)`, one per op family.
const SOURCES: &[(&str, &str)] = &[
    (
        "batchnorm.cu",
        include_str!("../ops/batchnorm/batchnorm.cu"),
    ),
    ("conv.cu", include_str!("../ops/conv/conv.cu")),
    (
        "elementwise.cu",
        include_str!("../ops/elementwise/elementwise.cu"),
    ),
    ("gemm.cu", include_str!("../ops/gemm/gemm.cu")),
    ("optim.cu", include_str!("../ops/optim/optim.cu")),
    ("pool.cu", include_str!("../ops/pool/pool.cu")),
    ("random.cu", include_str!("../ops/random/random.cu")),
    ("reduce.cu", include_str!("../ops/reduce/reduce.cu")),
    ("rows.cu", include_str!("../ops/rows/rows.cu")),
    ("shape.cu", include_str!("../ops/shape/shape.cu")),
    ("softmax.cu", include_str!("../ops/softmax/softmax.cu")),
];

/// Every kernel file as `(file name, source without the common prelude)`.
///
/// The `nvrtc` test compiles each of them, so a syntax or type error in any
/// `.cu` file fails CI even without a GPU.
pub fn kernel_sources() -> &'static [(&'static str, &'static str)] {
    SOURCES
}

/// The full translation unit NVRTC sees for a kernel file: the common
/// prelude followed by the file.
pub fn full_source(file: &str) -> Option<String> {
    SOURCES
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, src)| format!("{COMMON}\n#line 1 \"{file}\"\n{src}"))
}

/// The NVRTC options used for every file.
///
/// `--fmad=false` keeps `a·b + c` as two rounded operations, as on the CPU,
/// so element-wise kernels agree with the CPU kernels bit for bit where the
/// math functions allow. `arch` is e.g. `compute_90`; `None` lets NVRTC pick
/// its default (the device path passes the device's own architecture).
pub fn compile_options(file: &str, arch: Option<&str>) -> CompileOptions {
    CompileOptions {
        fmad: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        options: arch
            .map(|a| vec![format!("--gpu-architecture={a}")])
            .unwrap_or_default(),
        name: Some(file.to_string()),
        ..Default::default()
    }
}

/// Whether the NVRTC library can be loaded (`libnvrtc.so.13` on the library path).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library by its candidate names.
    unsafe { nvrtc::sys::is_culib_present() }
}

/// Compile one kernel file to PTX for `arch` (e.g. `compute_90`).
///
/// Needs only NVRTC (no driver, no GPU): this is what the CI compile check
/// runs. Fails with [`Error::CudaLibraryMissing`] when NVRTC cannot be
/// loaded and [`Error::NvrtcCompile`] (with the log) on a compile error.
pub fn compile_ptx(file: &'static str, arch: Option<&str>) -> Result<Ptx> {
    if !nvrtc_available() {
        return Err(Error::CudaLibraryMissing {
            lib: "nvrtc",
            why: "libnvrtc.so.13 was not found: `pip install nvidia-cuda-nvrtc==13.0.88` and put \
                  the folder holding libnvrtc.so.13 (site-packages/nvidia/cu13/lib) on \
                  LD_LIBRARY_PATH"
                .into(),
        });
    }
    let src = full_source(file).ok_or_else(|| Error::InvalidArgument {
        op: "cuda::compile_ptx",
        why: format!("no kernel file `{file}`"),
    })?;
    nvrtc::compile_ptx_with_opts(src, compile_options(file, arch)).map_err(|e| {
        Error::NvrtcCompile {
            file,
            log: match e {
                CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
                other => format!("{other:?}"),
            },
        }
    })
}
