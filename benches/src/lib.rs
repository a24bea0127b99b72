//! Shared pieces of the noprop-rs benchmarks: the shape lists that the
//! criterion benches, the `gemm-report` binary and the NumPy peer script
//! all time, so every table compares like with like.

/// A GEMM problem `C[m×n] = A[m×k]·B[k×n]` and where it comes from.
#[derive(Clone, Copy, Debug)]
pub struct GemmShape {
    /// What the shape is in the paper's block.
    pub label: &'static str,
    /// Rows of `C`.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of `C`.
    pub n: usize,
}

impl GemmShape {
    /// Floating-point operations of one product (`2·m·n·k`).
    pub fn flops(&self) -> u64 {
        2 * (self.m * self.n * self.k) as u64
    }

    /// `MxKxN`, the id used in benchmark names.
    pub fn id(&self) -> String {
        format!("{}x{}x{}", self.m, self.k, self.n)
    }
}

/// The GEMM shapes of the paper's DT block at batch 128: the im2col products
/// of conv2/conv3 for MNIST and CIFAR, and the fully connected layers.
pub const GEMM_SHAPES: &[GemmShape] = &[
    GemmShape {
        label: "MNIST conv2 im2col",
        m: 128 * 11 * 11,
        k: 288,
        n: 64,
    },
    GemmShape {
        label: "MNIST conv3 im2col",
        m: 128 * 9 * 9,
        k: 576,
        n: 128,
    },
    GemmShape {
        label: "CIFAR conv2 im2col",
        m: 128 * 13 * 13,
        k: 288,
        n: 64,
    },
    GemmShape {
        label: "CIFAR conv3 im2col",
        m: 128 * 11 * 11,
        k: 576,
        n: 128,
    },
    GemmShape {
        label: "MNIST image FC 2048→256",
        m: 128,
        k: 2048,
        n: 256,
    },
    GemmShape {
        label: "CIFAR image FC 3200→256",
        m: 128,
        k: 3200,
        n: 256,
    },
    GemmShape {
        label: "fusion FC 512→256",
        m: 128,
        k: 512,
        n: 256,
    },
    GemmShape {
        label: "CT/FM inference step: fusion FC label block 256→256, 500 images",
        m: 500,
        k: 256,
        n: 256,
    },
];

/// A convolution layer of the paper's block: `(label, C, H, W, OC)` at batch 128, 3×3, padding 0.
pub const CONV_LAYERS: &[(&str, usize, usize, usize, usize)] = &[
    ("mnist/conv1", 1, 28, 28, 32),
    ("mnist/conv2", 32, 13, 13, 64),
    ("mnist/conv3", 64, 11, 11, 128),
    ("cifar/conv1", 3, 32, 32, 32),
    ("cifar/conv2", 32, 15, 15, 64),
    ("cifar/conv3", 64, 13, 13, 128),
];
