//! Devices a [`Tensor`](crate::Tensor) can live on.
//!
//! The pattern follows candle: a runtime enum at the surface, and a stub CUDA
//! device when the `cuda` feature is off (see [`crate::cuda`]), so every
//! caller compiles the same way and a missing backend is a typed error
//! instead of a panic.

use crate::{Error, Result};

/// Where a tensor's storage lives and where its kernels run.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Device {
    /// Host memory, rayon kernels.
    #[default]
    Cpu,
    /// A CUDA GPU.
    Cuda(CudaDevice),
}

impl Device {
    /// Parse `cpu`, `cuda`, `cuda:N` or `auto`.
    ///
    /// `auto` picks CUDA device 0 when it can be opened and the CPU otherwise;
    /// the returned string says which and why.
    pub fn parse(spec: &str) -> Result<(Device, String)> {
        match spec {
            "cpu" => Ok((Device::Cpu, "cpu (requested)".to_string())),
            "auto" => match CudaDevice::new(0) {
                Ok(d) => Ok((
                    Device::Cuda(d),
                    "cuda:0 (auto: a CUDA device opened and its kernels can be compiled)".into(),
                )),
                Err(e) => Ok((Device::Cpu, format!("cpu (auto: no CUDA device: {e})"))),
            },
            s if s == "cuda" || s.starts_with("cuda:") => {
                let ordinal = match s.strip_prefix("cuda:") {
                    None => 0,
                    Some(n) => n.parse().map_err(|_| Error::InvalidArgument {
                        op: "Device::parse",
                        why: format!("`{s}`: the CUDA ordinal must be a number"),
                    })?,
                };
                Ok((
                    Device::Cuda(CudaDevice::new(ordinal)?),
                    format!("cuda:{ordinal} (requested)"),
                ))
            }
            other => Err(Error::InvalidArgument {
                op: "Device::parse",
                why: format!("unknown device `{other}` (expected cpu, cuda, cuda:N or auto)"),
            }),
        }
    }

    /// True for [`Device::Cpu`].
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// The most device memory held at once so far (the caching allocator's
    /// high-water mark of reserved bytes); `None` for the CPU.
    pub fn peak_memory_bytes(&self) -> Option<usize> {
        match self {
            Device::Cpu => None,
            Device::Cuda(d) => Some(d.pool_stats().peak_reserved_bytes),
        }
    }

    /// Wait until the device has finished the work queued so far (a no-op
    /// on the CPU); for wall-clock timings.
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cuda(d) => d.synchronize(),
            Device::Cpu => Ok(()),
        }
    }
}

impl std::fmt::Display for Device {
    /// `cpu` or `cuda:N`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(d) => write!(f, "cuda:{}", d.ordinal()),
        }
    }
}

pub use crate::cuda::CudaDevice;
