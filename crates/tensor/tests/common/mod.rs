//! Shared by the test binaries of `noprop-tensor`: one test body per device.
//!
//! `test_device!(body, ...)` turns each `fn body(dev: &Device)` into a
//! module `body` with two tests, `body::cpu` and `body::cuda` (the pattern
//! of candle's `test_device!` and burn's `testgen_all!`). The CUDA test opens
//! GPU 0; when none can be opened (the `cuda` feature is off, no driver, no
//! device) it prints `SKIPPED body::cuda: <reason>` to stderr and returns.
//! It is not `#[ignore]`d: on a GPU machine `cargo test --features cuda`,
//! and `benches/gpu/gpu_check.sh` (which fails on any `SKIPPED`), run it.

use noprop_tensor::Device;

/// GPU 0, or `None` after printing `SKIPPED <test>: <reason>` to stderr.
pub fn cuda_device(test: &str) -> Option<Device> {
    match Device::parse("cuda") {
        Ok((dev, _)) => Some(dev),
        Err(e) => {
            eprintln!("SKIPPED {test}: no usable CUDA device ({e})");
            None
        }
    }
}

/// Run each `fn body(dev: &Device)` as `body::cpu` and `body::cuda`.
#[allow(unused_macros)]
macro_rules! test_device {
    ($($body:ident),+ $(,)?) => {$(
        mod $body {
            #[test]
            fn cpu() {
                super::$body(&::noprop_tensor::Device::Cpu);
            }

            #[test]
            fn cuda() {
                let test = concat!(stringify!($body), "::cuda");
                if let Some(dev) = $crate::common::cuda_device(test) {
                    super::$body(&dev);
                }
            }
        }
    )+};
}
