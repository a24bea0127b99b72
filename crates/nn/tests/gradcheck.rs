//! Every layer's backward pass against central finite differences in f64.
//!
//! The f64 path: layers are built as usual (f32 parameters), then
//! [`Module::to_dtype`] converts every parameter, gradient and buffer to
//! `f64`; inputs are drawn in `f64`. Every kernel is generic over the element
//! type, so the f64 run executes exactly the code that trains in f32.
//!
//! For a scalar probe `f(x, θ) = ⟨layer(x; θ), r⟩` with a fixed random `r`,
//! the analytic gradients are `backward(r)` (input) and the accumulated
//! parameter gradients; the numeric ones are `(f(·+h) − f(·−h)) / 2h` with
//! `h = 1e-6`. We require the norm-wise relative error
//! `‖g_analytic − g_numeric‖ / max(‖g_analytic‖, ‖g_numeric‖)` to be below 1e-6
//! for the input and for every parameter tensor. (When the true gradient is
//! exactly zero — a bias right before batch-norm — both norms are rounding
//! noise below 1e-8 and the absolute error must be below 1e-8.)

use noprop_nn::layers::{
    BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential,
    SinusoidalTimeEmbedding,
};
use noprop_nn::{Mode, Module};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{ops, DType, Tensor};

const H: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn randn64(shape: &[usize], stream: u64) -> Tensor {
    ops::randn(shape, DType::F64, &mut RngStream::new(7, stream)).unwrap()
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    let scale = na.max(nb);
    // An exactly-zero true gradient (a bias feeding batch-norm) leaves only
    // rounding noise on both sides; there the absolute error must be tiny.
    if scale < 1e-8 {
        d / 1e-2
    } else {
        d / scale
    }
}

/// Check input and parameter gradients of `m` at input `x`. `reset` runs
/// before every forward (to replay dropout masks).
fn check<M: Module>(name: &str, m: &mut M, x: &Tensor, reset: &dyn Fn(&mut M)) {
    m.to_dtype(DType::F64);
    m.zero_grad();
    reset(m);
    let y = m.forward(x, Mode::Train).unwrap();
    let r = randn64(y.shape(), 99);
    let dx = m.backward(&r).unwrap();
    let analytic_params: Vec<(String, Vec<f64>)> = m
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.grad.to_vec_f64()))
        .collect();

    let f = |m: &mut M, x: &Tensor| -> f64 {
        reset(m);
        let y = m.forward(x, Mode::Train).unwrap();
        ops::dot(&y, &r).unwrap()
    };

    // Input gradient (skipped when the layer is told not to compute it).
    if dx.numel() > 0 {
        let mut num = vec![0.0; x.numel()];
        let mut xp = x.clone();
        for (i, n) in num.iter_mut().enumerate() {
            let orig = xp.as_slice::<f64>().unwrap()[i];
            xp.as_mut_slice::<f64>().unwrap()[i] = orig + H;
            let fp = f(m, &xp);
            xp.as_mut_slice::<f64>().unwrap()[i] = orig - H;
            let fm = f(m, &xp);
            xp.as_mut_slice::<f64>().unwrap()[i] = orig;
            *n = (fp - fm) / (2.0 * H);
        }
        let e = rel_err(&dx.to_vec_f64(), &num);
        assert!(e < TOL, "{name}: input gradient relative error {e:e}");
        eprintln!("{name}: input grad rel err {e:.2e}");
    }

    // Parameter gradients.
    for (pi, (pname, analytic)) in analytic_params.iter().enumerate() {
        let mut num = vec![0.0; analytic.len()];
        for (i, n) in num.iter_mut().enumerate() {
            let orig = m.params()[pi].value.as_slice::<f64>().unwrap()[i];
            m.params()[pi].value.as_mut_slice::<f64>().unwrap()[i] = orig + H;
            let fp = f(m, x);
            m.params()[pi].value.as_mut_slice::<f64>().unwrap()[i] = orig - H;
            let fm = f(m, x);
            m.params()[pi].value.as_mut_slice::<f64>().unwrap()[i] = orig;
            *n = (fp - fm) / (2.0 * H);
        }
        let e = rel_err(analytic, &num);
        assert!(
            e < TOL,
            "{name}: gradient of `{pname}` relative error {e:e}"
        );
        eprintln!("{name}: {pname} grad rel err {e:.2e}");
    }
}

fn no_reset<M>(_: &mut M) {}

#[test]
fn linear() {
    check(
        "Linear",
        &mut Linear::new(7, 5, 1, "fc"),
        &randn64(&[3, 7], 1),
        &no_reset,
    );
    check(
        "Linear+ReLU",
        &mut Linear::new(7, 5, 1, "fc").with_relu(),
        &randn64(&[4, 7], 2),
        &no_reset,
    );
    check(
        "Linear 1x1",
        &mut Linear::new(1, 1, 1, "fc"),
        &randn64(&[1, 1], 3),
        &no_reset,
    );
}

#[test]
fn conv2d() {
    check(
        "Conv2d pad0",
        &mut Conv2d::new(3, 4, 3, 0, 1, "c"),
        &randn64(&[2, 3, 6, 5], 4),
        &no_reset,
    );
    check(
        "Conv2d pad1",
        &mut Conv2d::new(2, 3, 3, 1, 1, "c"),
        &randn64(&[2, 2, 5, 5], 5),
        &no_reset,
    );
    check(
        "Conv2d+ReLU",
        &mut Conv2d::new(2, 3, 3, 0, 1, "c").with_relu(),
        &randn64(&[2, 2, 6, 6], 6),
        &no_reset,
    );
    check(
        "Conv2d no input grad",
        &mut Conv2d::new(1, 2, 3, 0, 1, "c").without_input_grad(),
        &randn64(&[2, 1, 5, 5], 7),
        &no_reset,
    );
    // A max pool after the conv leaves at most a quarter of its output
    // gradient nonzero, and 8 input channels give 72 column-matrix rows:
    // the CPU backward takes its sparse path (ops/conv/sparse.rs).
    check(
        "Conv2d+ReLU+MaxPool2d (sparse backward)",
        &mut Sequential::new()
            .push("conv", Conv2d::new(8, 4, 3, 0, 1, "c").with_relu())
            .push("pool", MaxPool2d::new()),
        &randn64(&[2, 8, 6, 6], 17),
        &no_reset,
    );
}

#[test]
fn batch_norm_1d_and_2d() {
    let mut bn = BatchNorm::new(5);
    // Non-trivial affine parameters.
    bn.gamma = randn64(&[5], 8).to_dtype(DType::F32);
    bn.beta = randn64(&[5], 9).to_dtype(DType::F32);
    check("BatchNorm1d", &mut bn, &randn64(&[6, 5], 10), &no_reset);
    let mut bn2 = BatchNorm::new(3);
    bn2.gamma = randn64(&[3], 11).to_dtype(DType::F32);
    check(
        "BatchNorm2d",
        &mut bn2,
        &randn64(&[2, 3, 4, 3], 12),
        &no_reset,
    );
}

#[test]
fn relu_pool_flatten_dropout_time() {
    check("ReLU", &mut ReLU::new(), &randn64(&[3, 7], 13), &no_reset);
    check(
        "MaxPool2d",
        &mut MaxPool2d::new(),
        &randn64(&[2, 3, 7, 6], 14),
        &no_reset,
    );
    check(
        "Flatten",
        &mut Flatten::new(),
        &randn64(&[2, 3, 2, 2], 15),
        &no_reset,
    );
    let start = RngStream::new(5, 1);
    check(
        "Dropout",
        &mut Dropout::new(0.2, 5, 1),
        &randn64(&[4, 9], 16),
        &move |d: &mut Dropout| d.rng = start,
    );
    let t = ops::rand_uniform(&[5], DType::F64, &mut RngStream::new(3, 3)).unwrap();
    check(
        "SinusoidalTimeEmbedding",
        &mut SinusoidalTimeEmbedding::new(64),
        &t,
        &no_reset,
    );
}

#[test]
fn sequential_block_like_stack() {
    // A miniature of the paper's image path (dropout is checked on its own
    // above, with its mask stream rewound before every forward).
    let mut stack = Sequential::new()
        .push("conv1", Conv2d::new(1, 2, 3, 0, 3, "conv1").with_relu())
        .push("pool1", MaxPool2d::new())
        .push("conv2", Conv2d::new(2, 3, 3, 0, 3, "conv2"))
        .push("relu2", ReLU::new())
        .push("flat", Flatten::new())
        .push("fc", Linear::new(3 * 2 * 2, 4, 3, "fc"))
        .push("bn", BatchNorm::new(4));
    let names: Vec<String> = stack.params().iter().map(|p| p.name.clone()).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc.weight",
            "fc.bias",
            "bn.weight",
            "bn.bias"
        ]
    );
    check(
        "Sequential",
        &mut stack,
        &randn64(&[3, 1, 10, 10], 17),
        &no_reset,
    );
}
