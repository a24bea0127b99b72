//! The caching device allocator reaches a steady state: after warm-up, a
//! repeated step allocates nothing new on the device.
//!
//! The pool is shared by every user of a GPU in the process, so this test
//! lives alone in its own test binary (its own process): no other test can
//! allocate while it counts, whatever the test threads or their scheduling.
//! Skips, printing why, without a usable GPU.
#![cfg(feature = "cuda")]

use noprop_tensor::cuda::{ops as g, CudaDevice, CudaTensor};
use noprop_tensor::ops::{self as c, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::DType;

#[test]
fn allocator_steady_state() {
    let d = match CudaDevice::new(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED allocator_steady_state: no usable CUDA device ({e})");
            return;
        }
    };
    let d = d.new_stream().unwrap();
    let randn = |shape: &[usize], stream: u64| {
        let mut rng = RngStream::new(0x5eed, stream);
        let t = c::randn(shape, DType::F32, &mut rng).unwrap();
        CudaTensor::from_host(&t, &d).unwrap()
    };
    let x = randn(&[64, 128], 5000);
    let w = randn(&[128, 32], 5001);
    let step = |d: &CudaDevice| {
        let y = g::matmul(&x, Transpose::No, &w, Transpose::No).unwrap();
        let r = g::relu(&y).unwrap();
        let _ = g::sum(&r).unwrap();
        d.synchronize().unwrap();
    };
    step(&d);
    step(&d);
    let before = d.pool_stats().device_allocations;
    for _ in 0..10 {
        step(&d);
    }
    assert_eq!(
        d.pool_stats().device_allocations,
        before,
        "steady state allocates nothing on the device"
    );
}
