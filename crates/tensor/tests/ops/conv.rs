//! Convolution: see the parity table in `main.rs`.

use super::*;

/// `(n, c, h, w, oc, k, pad)` with a `k×k` kernel: odd sizes, 1s, larger
/// kernels, the paper's MNIST/CIFAR layers (small batch) and an empty batch.
const CONV_ZOO: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (1, 1, 3, 3, 1, 3, 0),
    (1, 1, 1, 1, 7, 3, 1),
    (1, 1, 1, 1, 1, 1, 0),
    (2, 3, 7, 5, 4, 3, 0),
    (2, 3, 7, 5, 4, 3, 1),
    (3, 7, 9, 9, 63, 3, 1),
    (2, 9, 6, 7, 5, 3, 1), // a task per channel in im2col, with padding
    (2, 7, 9, 5, 3, 5, 2),
    (35, 3, 6, 5, 4, 3, 0), // the CPU backward in four uneven parts (8, 9, 9, 9 images)
    (19, 2, 5, 6, 3, 3, 1), // two parts, padding
    (1, 2, 63, 7, 1, 3, 0),
    (3, 1, 28, 28, 8, 3, 1),
    (2, 1, 28, 28, 32, 3, 0),   // MNIST conv1
    (2, 32, 13, 13, 64, 3, 0),  // MNIST conv2
    (2, 64, 11, 11, 128, 3, 0), // MNIST conv3
    (2, 3, 32, 32, 32, 3, 0),   // CIFAR conv1
    (0, 3, 5, 5, 2, 3, 0),      // empty batch
];

/// `dy` with three pixels of every 2×2 window zeroed (the kept one
/// varies with the channel and the window), as a max pool's backward leaves
/// it.
pub(crate) fn pooled_like(dy: &Tensor) -> Tensor {
    let (c, oh, ow) = (dy.dim(1), dy.dim(2), dy.dim(3));
    let v: Vec<f64> = dy
        .to_vec_f64()
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let (ch, oy, ox) = ((i / (oh * ow)) % c, (i / ow) % oh, i % ow);
            let pick = (ch + oy / 2 * 3 + ox / 2) % 4;
            if (oy % 2) * 2 + ox % 2 == pick {
                d
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(v, dy.shape())
        .unwrap()
        .to_dtype(dy.dtype())
}

/// The geometry of a convolution: `(OH, OW)`.
fn out_hw(h: usize, w: usize, k: usize, pad: usize) -> (usize, usize) {
    (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k)
}

/// `im2col`: `[C·K·K, N·OH·OW]`, row `(c, ky, kx)`, column `(n, oy, ox)`.
fn naive_im2col(x: &[f64], s: [usize; 4], k: usize, pad: usize) -> Vec<f64> {
    let [n, c, h, w] = s;
    let (oh, ow) = out_hw(h, w, k, pad);
    let np = n * oh * ow;
    let mut col = vec![0.0; c * k * k * np];
    for ci in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                for ni in 0..n {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let iy = (y + ky) as isize - pad as isize;
                            let ix = (xx + kx) as isize - pad as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                col[row * np + (ni * oh + y) * ow + xx] =
                                    x[((ni * c + ci) * h + iy as usize) * w + ix as usize];
                            }
                        }
                    }
                }
            }
        }
    }
    col
}

/// `col2im`, the adjoint of [`naive_im2col`]: every column entry added to
/// the pixel it was copied from.
fn naive_col2im(col: &[f64], s: [usize; 4], k: usize, pad: usize) -> Vec<f64> {
    let [n, c, h, w] = s;
    let (oh, ow) = out_hw(h, w, k, pad);
    let np = n * oh * ow;
    let mut x = vec![0.0; n * c * h * w];
    for ci in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let row = (ci * k + ky) * k + kx;
                for ni in 0..n {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let iy = (y + ky) as isize - pad as isize;
                            let ix = (xx + kx) as isize - pad as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                x[((ni * c + ci) * h + iy as usize) * w + ix as usize] +=
                                    col[row * np + (ni * oh + y) * ow + xx];
                            }
                        }
                    }
                }
            }
        }
    }
    x
}

/// Naive convolution (`[N, OC, OH, OW]`) and its gradients for `dy`:
/// `(y, dx, dw, db)`.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn naive_conv(
    x: &[f64],
    s: [usize; 4],
    wt: &[f64],
    oc: usize,
    k: usize,
    b: Option<&[f64]>,
    pad: usize,
    dy: Option<&[f64]>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let [n, c, h, w] = s;
    let (oh, ow) = out_hw(h, w, k, pad);
    let mut y = vec![0.0; n * oc * oh * ow];
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; oc]);
    for ni in 0..n {
        for o in 0..oc {
            for yy in 0..oh {
                for xx in 0..ow {
                    let at = ((ni * oc + o) * oh + yy) * ow + xx;
                    let d = dy.map_or(0.0, |d| d[at]);
                    db[o] += d;
                    let mut acc = b.map_or(0.0, |b| b[o]);
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (yy + ky) as isize - pad as isize;
                                let ix = (xx + kx) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let xi = ((ni * c + ci) * h + iy as usize) * w + ix as usize;
                                    let wi = ((o * c + ci) * k + ky) * k + kx;
                                    acc += x[xi] * wt[wi];
                                    dw[wi] += d * x[xi];
                                    dx[xi] += d * wt[wi];
                                }
                            }
                        }
                    }
                    y[at] = acc;
                }
            }
        }
    }
    (y, dx, dw, db)
}

/// Forward (with and without bias, with the fused ReLU) and backward (with
/// the fused ReLU mask) against the naive convolution; im2col exactly and
/// col2im against its naive adjoint. f64: forward 1e-12, backward 1e-11,
/// col2im 1e-12 (floor 1); f32: 1e-5 of the result's scale.
fn conv2d_matches_naive_reference(dev: &Device) {
    for (zi, &(n, c, h, w, oc, k, pad)) in CONV_ZOO.iter().enumerate() {
        for &dtype in dtypes(dev) {
            let s = zi as u64 * 10;
            let shape = [n, c, h, w];
            let x = rand_t(&shape, dtype, s + 1);
            let wt = rand_t(&[oc, c, k, k], dtype, s + 2);
            let b = rand_t(&[oc], dtype, s + 3);
            let (dx_, dw_, db_) = (up(dev, &x), up(dev, &wt), up(dev, &b));
            let (xv, wv, bv) = (x.to_vec_f64(), wt.to_vec_f64(), b.to_vec_f64());
            let what = format!("conv {:?} {dtype:?}", CONV_ZOO[zi]);
            let f32 = dtype == DType::F32;

            // im2col is a copy; col2im sums overlapping taps.
            let col = ops::im2col(&dx_, k, k, pad).unwrap();
            check_exact(
                dev,
                &format!("{what} im2col"),
                &col,
                &naive_im2col(&xv, shape, k, pad),
            );
            let cc = rand_t(col.shape(), dtype, s + 4);
            let back_ = ops::col2im(&up(dev, &cc), &shape, k, k, pad).unwrap();
            let want = naive_col2im(&cc.to_vec_f64(), shape, k, pad);
            let (floor, tol) = if f32 {
                (scale(&want), 1e-6)
            } else {
                (1.0, 1e-12)
            };
            check_ref(
                dev,
                &format!("{what} col2im"),
                &back_,
                &want,
                floor,
                tol,
                Row::Col2im,
            );
            parity(
                dev,
                &format!("{what} col2im"),
                &back_,
                || ops::col2im(&cc, &shape, k, k, pad).unwrap(),
                Row::Col2im,
            );

            // `pooled`: a gradient as a 2×2 max pool leaves it (one pixel
            // in four nonzero), which the CPU backward takes on its sparse
            // path; the others are dense.
            for (bias, relu, pooled) in [
                (true, false, false),
                (false, false, false),
                (true, true, false),
                (true, true, true),
                (false, false, true),
            ] {
                let what = format!("{what} bias={bias} relu={relu} pooled={pooled}");
                let mut ws = ops::ConvWorkspace::new();
                let y = ops::conv2d_forward(&dx_, &dw_, bias.then_some(&db_), pad, relu, &mut ws)
                    .unwrap();
                let dy = rand_t(y.shape(), dtype, s + 5);
                let dy = if pooled { pooled_like(&dy) } else { dy };
                let yv = back(dev, &what, &y);
                // The fused mask [y > 0] applied to dy, from the op's own output.
                let dyv: Vec<f64> = dy
                    .to_vec_f64()
                    .iter()
                    .zip(&yv)
                    .map(|(&d, &yy)| if relu && yy <= 0.0 { 0.0 } else { d })
                    .collect();
                let bias_v = bias.then_some(&bv[..]);
                let (mut want, wdx, wdw, wdb) =
                    naive_conv(&xv, shape, &wv, oc, k, bias_v, pad, Some(&dyv));
                if relu {
                    want.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                assert_eq!(
                    y.shape(),
                    &[n, oc, h + 2 * pad + 1 - k, w + 2 * pad + 1 - k]
                );
                let (floor, tol) = if f32 {
                    (scale(&want), 1e-5)
                } else {
                    (1.0, 1e-12)
                };
                check_ref(
                    dev,
                    &format!("{what} forward"),
                    &y,
                    &want,
                    floor,
                    tol,
                    Row::Gemm,
                );
                // The CPU twin, masking with the device's own output (so
                // that a value near 0 that rounds to the other side of 0 on
                // the two devices does not flip the mask).
                let run_cpu = || {
                    let mut ws = ops::ConvWorkspace::new();
                    let yc = ops::conv2d_forward(&x, &wt, bias.then_some(&b), pad, relu, &mut ws)
                        .unwrap();
                    let yh = y.to_device(&Device::Cpu).unwrap();
                    let g =
                        ops::conv2d_backward(&dy, &wt, relu.then_some(&yh), &mut ws, true).unwrap();
                    (yc, g)
                };
                parity(
                    dev,
                    &format!("{what} forward"),
                    &y,
                    || run_cpu().0,
                    Row::Gemm,
                );

                let mask = relu.then_some(&y);
                let ddy = up(dev, &dy);
                let g = ops::conv2d_backward(&ddy, &dw_, mask, &mut ws, true).unwrap();
                let dxg = g.dx.as_ref().unwrap();
                for (name, got, want) in
                    [("dw", &g.dw, &wdw), ("db", &g.db, &wdb), ("dx", dxg, &wdx)]
                {
                    let (floor, tol) = if f32 {
                        (scale(want), 1e-5)
                    } else {
                        (1.0, 1e-11)
                    };
                    let what = format!("{what} {name}");
                    check_ref(dev, &what, got, want, floor, tol, Row::Gemm);
                }
                if !dev.is_cpu() {
                    let (_, gc) = run_cpu();
                    parity(
                        dev,
                        &format!("{what} dw"),
                        &g.dw,
                        || gc.dw.clone(),
                        Row::Gemm,
                    );
                    parity(
                        dev,
                        &format!("{what} db"),
                        &g.db,
                        || gc.db.clone(),
                        Row::Gemm,
                    );
                    let cdx = gc.dx.clone().unwrap();
                    parity(dev, &format!("{what} dx"), dxg, || cdx, Row::Gemm);
                }
                // A second backward without a forward is an error, not garbage.
                assert!(ops::conv2d_backward(&ddy, &dw_, mask, &mut ws, true).is_err());
            }
        }
    }
}

/// An f32 convolution with the fused ReLU against the f64 one on the CPU
/// (floor 17, 1e-5); the ReLU zeroed some outputs and kept others.
fn conv2d_f32_matches_f64_and_fused_relu(dev: &Device) {
    let x = rand_t(&[4, 32, 13, 13], DType::F32, 11);
    let wt = rand_t(&[64, 32, 3, 3], DType::F32, 12);
    let b = rand_t(&[64], DType::F32, 13);
    let mut ws = ops::ConvWorkspace::new();
    let y = ops::conv2d_forward(
        &up(dev, &x),
        &up(dev, &wt),
        Some(&up(dev, &b)),
        0,
        true,
        &mut ws,
    )
    .unwrap();
    let mut ws64 = ops::ConvWorkspace::new();
    let y64 = ops::conv2d_forward(
        &x.to_dtype(DType::F64),
        &wt.to_dtype(DType::F64),
        Some(&b.to_dtype(DType::F64)),
        0,
        false,
        &mut ws64,
    )
    .unwrap();
    let want: Vec<f64> = y64.to_vec_f64().iter().map(|v| v.max(0.0)).collect();
    check_ref(dev, "conv f32 vs f64", &y, &want, 17.0, 1e-5, Row::Gemm);
    let yv = back(dev, "conv f32", &y);
    assert!(yv.contains(&0.0) && yv.iter().any(|&v| v > 0.0));
}

/// The ReLU mask fused into the backward equals masking `dy` first, bit
/// for bit (the same GEMMs on the same values).
fn fused_relu_mask_in_conv_backward_equals_separate_mask(dev: &Device) {
    for &dtype in dtypes(dev) {
        let x = up(dev, &rand_t(&[3, 4, 9, 8], dtype, 111));
        let w = up(dev, &rand_t(&[5, 4, 3, 3], dtype, 112));
        let b = up(dev, &rand_t(&[5], dtype, 113));
        let mut ws1 = ops::ConvWorkspace::new();
        let y = ops::conv2d_forward(&x, &w, Some(&b), 0, true, &mut ws1).unwrap();
        let dy = up(dev, &rand_t(y.shape(), dtype, 114));
        let fused = ops::conv2d_backward(&dy, &w, Some(&y), &mut ws1, true).unwrap();
        let mut ws2 = ops::ConvWorkspace::new();
        ops::conv2d_forward(&x, &w, Some(&b), 0, true, &mut ws2).unwrap();
        let masked = ops::relu_backward(&dy, &y).unwrap();
        let plain = ops::conv2d_backward(&masked, &w, None, &mut ws2, true).unwrap();
        assert!(
            fused.dw.bit_eq(&plain.dw) && fused.db.bit_eq(&plain.db),
            "{dtype:?}"
        );
        assert!(fused.dx.unwrap().bit_eq(&plain.dx.unwrap()), "{dtype:?}");
        // The mask did something.
        assert!(back(dev, "y", &y).contains(&0.0));
    }
}

/// `<im2col(x), c> == <x, col2im(c)>` for random `x`, `c`; pad 0 with a
/// 3-row kernel takes col2im's fused path (edge rows too). f64: 1e-12
/// relative; f32: 1e-5.
fn im2col_col2im_are_adjoint(dev: &Device) {
    for &(n, c, h, w, kw, pad) in &[
        (1, 1, 3, 3, 3, 0),
        (2, 3, 7, 5, 3, 1),
        (1, 7, 9, 8, 3, 0),
        (2, 4, 13, 11, 3, 0),
        (1, 2, 4, 6, 2, 0),
        (1, 2, 5, 6, 1, 1),
        (2, 9, 6, 7, 3, 0), // a task per channel (fused 3-row path)
        (2, 8, 5, 5, 3, 1), // a task per channel (general col2im)
    ] {
        for &dtype in dtypes(dev) {
            let x = up(dev, &rand_t(&[n, c, h, w], dtype, 21));
            let col = ops::im2col(&x, 3, kw, pad).unwrap();
            let cc = up(dev, &rand_t(col.shape(), dtype, 22));
            let back_ = ops::col2im(&cc, &[n, c, h, w], 3, kw, pad).unwrap();
            let lhs = ops::dot(&col, &cc).unwrap();
            let rhs = ops::dot(&x, &back_).unwrap();
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            check_scalar(dev, "adjoint", lhs, rhs, tol, 0.0, Row::Gemm);
        }
    }
}

/// A weight with other input channels than the cached forward's input is
/// refused, and the refusal leaves the workspace usable.
fn conv2d_backward_rejects_a_weight_of_other_input_channels(dev: &Device) {
    let x = up(dev, &rand_t(&[2, 3, 9, 9], DType::F32, 6000));
    let w = up(dev, &rand_t(&[4, 3, 3, 3], DType::F32, 6001));
    let wrong = up(dev, &rand_t(&[4, 5, 3, 3], DType::F32, 6002));
    let mut ws = ops::ConvWorkspace::new();
    let y = ops::conv2d_forward(&x, &w, None, 0, false, &mut ws).unwrap();
    let dy = up(dev, &rand_t(y.shape(), DType::F32, 6003));
    let e = match ops::conv2d_backward(&dy, &wrong, None, &mut ws, true) {
        Err(e) => e,
        Ok(_) => panic!("{dev} must refuse a weight of other input channels"),
    };
    assert!(e.to_string().contains("input channels"), "{e}");
    // The refused call left the cached forward in place: the right weight works.
    let ok = ops::conv2d_backward(&dy, &w, None, &mut ws, true).unwrap();
    assert_eq!(ok.dw.shape(), w.shape());
    assert_eq!(ok.dw.device(), *dev);
}

test_device!(
    conv2d_matches_naive_reference,
    conv2d_f32_matches_f64_and_fused_relu,
    fused_relu_mask_in_conv_backward_equals_separate_mask,
    im2col_col2im_are_adjoint,
    conv2d_backward_rejects_a_weight_of_other_input_channels,
);
