//! Device dispatch of the public `ops` on [`Tensor`]: device tensors run the
//! CUDA twins, mixed devices and host accessors on device tensors are typed
//! errors, copies on write keep values from aliasing, and `to_device` round
//! trips. The GPU tests print `SKIPPED …` and pass without a usable GPU
//! (see `common/mod.rs`); the host-only ones run everywhere. Each op's
//! values on every device are checked in `ops/main.rs`; this file checks the
//! dispatch around them.
//!
//! Tolerances are those of `ops/main.rs` (0 for element-wise and shape ops, 1e-4
//! relative for GEMM, conv and batch-norm, 1e-5 for softmax).

mod common;

use common::cuda_device as gpu;
use noprop_tensor::ops::{self, ConvWorkspace, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Device, Error, Tensor};

fn randn(shape: &[usize], stream: u64) -> Tensor {
    ops::randn(shape, DType::F32, &mut RngStream::new(0xd15, stream)).unwrap()
}

fn close(what: &str, cpu: &Tensor, dev: &Tensor, tol: f32) {
    assert_eq!(cpu.shape(), dev.shape(), "{what}: shape");
    assert!(!dev.is_on_host(), "{what}: result came back on the host");
    let (a, b) = (cpu.to_vec_f32(), dev.try_to_vec_f32().unwrap());
    let s = a.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tol * s,
            "{what}[{i}]: cpu {x}, gpu {y} (tolerance {})",
            tol * s
        );
    }
}

#[test]
fn host_tensors_stay_on_the_host() {
    let a = randn(&[3, 4], 1);
    assert!(a.is_on_host());
    assert_eq!(a.device(), Device::Cpu);
    let b = a.to_device(&Device::Cpu).unwrap();
    assert!(a.bit_eq(&b));
    let z = Tensor::zeros_on(&[2, 2], DType::F64, &Device::Cpu).unwrap();
    assert_eq!(z.dtype(), DType::F64);
    let r = ops::randn_on(&Device::Cpu, &[5], DType::F32, &mut RngStream::new(1, 2)).unwrap();
    let h = ops::randn(&[5], DType::F32, &mut RngStream::new(1, 2)).unwrap();
    assert!(r.bit_eq(&h), "randn_on(Cpu) must draw what randn draws");
    let x = randn(&[2, 3, 6, 6], 3);
    let (y, idx) = ops::max_pool2d(&x).unwrap();
    let (y2, idx2) = ops::max_pool2d_forward(&x).unwrap();
    assert!(y.bit_eq(&y2));
    let dy = randn(y.shape(), 4);
    let g = ops::max_pool2d_grad(&dy, &idx, x.shape()).unwrap();
    let g2 = ops::max_pool2d_backward(&dy, &idx2, x.shape()).unwrap();
    assert!(g.bit_eq(&g2));
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_feature_cuda_is_a_typed_error() {
    let a = randn(&[2], 1);
    match Device::parse("cuda") {
        Err(Error::CudaNotCompiled) => {}
        other => panic!("expected CudaNotCompiled, got {other:?}"),
    }
    let (d, why) = Device::parse("auto").unwrap();
    assert!(d.is_cpu(), "{why}");
    assert!(a.to_device(&d).unwrap().is_on_host());
}

#[test]
fn ops_on_device_tensors_match_the_host() {
    let Some(dev) = gpu("ops_on_device_tensors_match_the_host") else {
        return;
    };
    let up = |t: &Tensor| t.to_device(&dev).unwrap();
    let (a, b) = (randn(&[7, 63], 1), randn(&[7, 63], 2));
    let (ga, gb) = (up(&a), up(&b));
    close(
        "add",
        &ops::add(&a, &b).unwrap(),
        &ops::add(&ga, &gb).unwrap(),
        0.0,
    );
    close(
        "mul",
        &ops::mul(&a, &b).unwrap(),
        &ops::mul(&ga, &gb).unwrap(),
        0.0,
    );
    close(
        "add_scaled",
        &ops::add_scaled(0.3, &a, -1.5, &b).unwrap(),
        &ops::add_scaled(0.3, &ga, -1.5, &gb).unwrap(),
        0.0,
    );
    close(
        "matmul",
        &ops::matmul(&a, Transpose::No, &b, Transpose::Yes).unwrap(),
        &ops::matmul(&ga, Transpose::No, &gb, Transpose::Yes).unwrap(),
        1e-4,
    );
    close(
        "softmax",
        &ops::softmax(&a).unwrap(),
        &ops::softmax(&ga).unwrap(),
        1e-5,
    );
    close(
        "sum_rows",
        &ops::sum_rows(&a).unwrap(),
        &ops::sum_rows(&ga).unwrap(),
        0.0,
    );
    let labels: Vec<usize> = (0..7).map(|i| i * 5 % 63).collect();
    let (lc, gc) = ops::softmax_cross_entropy(&a, &labels).unwrap();
    let (lg, gg) = ops::softmax_cross_entropy(&ga, &labels).unwrap();
    assert!((lc - lg).abs() <= 1e-5 * lc.abs().max(1.0));
    close("xent grad", &gc, &gg, 1e-5);
    assert!((ops::sum_sq(&a).unwrap() - ops::sum_sq(&ga).unwrap()).abs() < 1e-3);

    // Convolution and pooling through the workspace-carrying API.
    let x = randn(&[3, 2, 9, 9], 5);
    let w = randn(&[4, 2, 3, 3], 6);
    let bias = randn(&[4], 7);
    let (mut wc, mut wg) = (ConvWorkspace::new(), ConvWorkspace::new());
    let yc = ops::conv2d_forward(&x, &w, Some(&bias), 1, true, &mut wc).unwrap();
    let yg = ops::conv2d_forward(&up(&x), &up(&w), Some(&up(&bias)), 1, true, &mut wg).unwrap();
    close("conv2d", &yc, &yg, 1e-4);
    let dy = randn(yc.shape(), 8);
    let gc = ops::conv2d_backward(&dy, &w, Some(&yc), &mut wc, true).unwrap();
    let gg = ops::conv2d_backward(&up(&dy), &up(&w), Some(&yg), &mut wg, true).unwrap();
    close("conv dw", &gc.dw, &gg.dw, 1e-4);
    close("conv db", &gc.db, &gg.db, 1e-4);
    close(
        "conv dx",
        gc.dx.as_ref().unwrap(),
        gg.dx.as_ref().unwrap(),
        1e-4,
    );
    let (pc, ic) = ops::max_pool2d(&yc).unwrap();
    let (pg, ig) = ops::max_pool2d(&yg).unwrap();
    close("max_pool2d", &pc, &pg, 1e-4);
    let dp = randn(pc.shape(), 9);
    close(
        "max_pool2d_grad",
        &ops::max_pool2d_grad(&dp, &ic, yc.shape()).unwrap(),
        &ops::max_pool2d_grad(&up(&dp), &ig, yc.shape()).unwrap(),
        1e-4,
    );

    // Batch norm keeps its running statistics on the device.
    let h = randn(&[16, 5], 10);
    let (g1, b1) = (randn(&[5], 11), randn(&[5], 12));
    let (mut rm, mut rv) = (
        Tensor::zeros(&[5], DType::F32),
        Tensor::full(&[5], 1.0, DType::F32),
    );
    let (mut grm, mut grv) = (up(&rm), up(&rv));
    let (yc, sc) = ops::batch_norm_train(&h, &g1, &b1, &mut rm, &mut rv, 0.1, 1e-5).unwrap();
    let (yg, sg) =
        ops::batch_norm_train(&up(&h), &up(&g1), &up(&b1), &mut grm, &mut grv, 0.1, 1e-5).unwrap();
    close("bn y", &yc, &yg, 1e-4);
    close("bn running_var", &rv, &grv, 1e-4);
    let dh = randn(&[16, 5], 13);
    let (dxc, _, _) = ops::batch_norm_backward(&dh, &g1, &sc).unwrap();
    let (dxg, _, _) = ops::batch_norm_backward(&up(&dh), &up(&g1), &sg).unwrap();
    close("bn dx", &dxc, &dxg, 1e-4);

    // Random draws on the device are the host's draws.
    let rc = ops::randn(&[33], DType::F32, &mut RngStream::new(3, 4)).unwrap();
    let rg = ops::randn_on(&dev, &[33], DType::F32, &mut RngStream::new(3, 4)).unwrap();
    close("randn_on", &rc, &rg, 1e-6);
}

#[test]
fn mixed_devices_and_host_accessors_are_typed_errors() {
    let Some(dev) = gpu("mixed_devices_and_host_accessors_are_typed_errors") else {
        return;
    };
    let a = randn(&[4, 4], 1);
    let ga = a.to_device(&dev).unwrap();
    assert!(matches!(
        ops::add(&a, &ga),
        Err(Error::DeviceMismatch { .. })
    ));
    let mut y = a.clone();
    assert!(matches!(
        ops::axpy(&mut y, 1.0, &ga),
        Err(Error::DeviceMismatch { .. })
    ));
    assert!(matches!(
        ops::matmul(&ga, Transpose::No, &a, Transpose::No),
        Err(Error::DeviceMismatch { .. })
    ));
    assert!(matches!(ga.as_slice::<f32>(), Err(Error::NotOnHost { .. })));
    assert!(matches!(ga.view::<f32>(), Err(Error::NotOnHost { .. })));
    assert!(matches!(
        ga.clone().into_vec::<f32>(),
        Err(Error::NotOnHost { .. })
    ));
    let mut gm = ga.clone();
    assert!(matches!(
        gm.as_mut_slice::<f32>(),
        Err(Error::NotOnHost { .. })
    ));
    // f64 does not live on the GPU.
    assert!(matches!(
        a.to_dtype(DType::F64).to_device(&dev),
        Err(Error::CudaUnsupported { .. })
    ));
}

#[test]
fn device_tensors_copy_on_write_and_round_trip() {
    let Some(dev) = gpu("device_tensors_copy_on_write_and_round_trip") else {
        return;
    };
    let a = randn(&[5, 3], 1);
    let ga = a.to_device(&dev).unwrap();
    let back = ga.to_device(&Device::Cpu).unwrap();
    assert!(back.bit_eq(&a), "host → device → host changed the values");
    // A clone shares the buffer until one side writes.
    let mut gb = ga.clone();
    ops::scale_in_place(&mut gb, 2.0).unwrap();
    assert!(ga.bit_eq(&a), "writing a clone changed the original");
    assert!(gb.bit_eq(&ops::scale(&a, 2.0).unwrap()));
    // Reshape keeps the data, fill and zeros stay on the device.
    let r = ga.clone().reshape(&[15]).unwrap();
    assert_eq!(r.to_vec_f32(), a.to_vec_f32());
    let mut f = ga.zeros_like();
    assert!(!f.is_on_host());
    f.try_fill(0.5).unwrap();
    assert_eq!(f.to_vec_f32(), vec![0.5; 15]);
    // copy_from across devices.
    let mut h = Tensor::zeros(&[5, 3], DType::F32);
    h.copy_from(&ga).unwrap();
    assert!(h.is_on_host() && h.bit_eq(&a));
    let mut d = ga.zeros_like();
    d.copy_from(&a).unwrap();
    assert!(!d.is_on_host() && d.bit_eq(&a));
}
