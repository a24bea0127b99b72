//! The paper's published numbers (arXiv 2503.24322 v2), transcribed as
//! `docs/DECISIONS.md`, note J describes, to print beside ours.

/// A published mean ± standard error, in percent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Published {
    /// Mean (%).
    pub mean: f64,
    /// Standard error (%).
    pub se: f64,
}

const fn p(mean: f64, se: f64) -> Published {
    Published { mean, se }
}

/// One row of Table 1: method, embedding, then (train, test) for MNIST,
/// CIFAR-10 and CIFAR-100.
type Row = (&'static str, &'static str, [(Published, Published); 3]);

/// Table 1 — classification accuracy (%), mean ± s.e. over 3 seeds × 5
/// inference runs.
const TABLE1: [Row; 13] = [
    (
        "backprop",
        "one-hot",
        [
            (p(100.0, 0.0), p(99.46, 0.06)),
            (p(99.98, 0.01), p(79.92, 0.14)),
            (p(98.63, 1.34), p(45.85, 2.07)),
        ],
    ),
    (
        "backprop",
        "dim20",
        [
            (p(99.99, 0.0), p(99.43, 0.03)),
            (p(99.96, 0.02), p(79.3, 0.52)),
            (p(94.28, 7.43), p(46.57, 0.87)),
        ],
    ),
    (
        "backprop",
        "prototype",
        [
            (p(99.99, 0.01), p(99.44, 0.05)),
            (p(99.97, 0.01), p(79.58, 0.44)),
            (p(99.19, 0.71), p(47.8, 0.19)),
        ],
    ),
    (
        "noprop-dt",
        "one-hot",
        [
            (p(99.92, 0.01), p(99.47, 0.05)),
            (p(95.02, 0.19), p(79.25, 0.28)),
            (p(84.97, 0.67), p(45.93, 0.46)),
        ],
    ),
    (
        "noprop-dt",
        "dim20",
        [
            (p(99.93, 0.01), p(99.49, 0.04)),
            (p(94.95, 0.09), p(79.12, 0.37)),
            (p(83.25, 0.39), p(45.19, 0.22)),
        ],
    ),
    (
        "noprop-dt",
        "prototype",
        [
            (p(99.97, 0.0), p(99.54, 0.04)),
            (p(97.23, 0.11), p(80.54, 0.2)),
            (p(90.7, 0.14), p(46.06, 0.25)),
        ],
    ),
    (
        "adjoint",
        "one-hot",
        [
            (p(98.7, 0.13), p(98.62, 0.14)),
            (p(70.64, 0.49), p(66.78, 0.76)),
            (p(26.72, 0.81), p(25.03, 0.7)),
        ],
    ),
    (
        "noprop-ct",
        "one-hot",
        [
            (p(97.88, 0.61), p(97.84, 0.71)),
            (p(97.31, 0.84), p(73.35, 0.55)),
            (p(75.1, 3.43), p(33.66, 0.5)),
        ],
    ),
    (
        "noprop-ct",
        "dim20",
        [
            (p(97.7, 0.42), p(97.7, 0.51)),
            (p(94.88, 3.08), p(71.77, 2.47)),
            (p(74.22, 2.33), p(33.99, 1.08)),
        ],
    ),
    (
        "noprop-ct",
        "prototype",
        [
            (p(97.18, 1.02), p(97.17, 0.94)),
            (p(86.2, 7.34), p(66.54, 3.63)),
            (p(40.88, 10.72), p(21.31, 4.17)),
        ],
    ),
    (
        "noprop-fm",
        "one-hot",
        [
            (p(99.97, 0.0), p(99.21, 0.09)),
            (p(98.46, 0.4), p(73.14, 0.9)),
            (p(12.69, 10.4), p(6.38, 4.9)),
        ],
    ),
    (
        "noprop-fm",
        "dim20",
        [
            (p(99.99, 0.0), p(99.29, 0.05)),
            (p(99.49, 0.15), p(73.5, 0.28)),
            (p(83.49, 4.62), p(31.14, 0.52)),
        ],
    ),
    (
        "noprop-fm",
        "prototype",
        [
            (p(99.27, 0.09), p(98.52, 0.16)),
            (p(99.8, 0.03), p(75.18, 0.57)),
            (p(96.37, 1.09), p(37.57, 0.32)),
        ],
    ),
];

fn dataset_column(dataset: &str) -> Option<usize> {
    match dataset {
        "mnist" => Some(0),
        "cifar10" => Some(1),
        "cifar100" => Some(2),
        _ => None,
    }
}

/// Table 1's (train, test) accuracy for a cell, if the paper reports it.
pub fn table1(dataset: &str, method: &str, embedding: &str) -> Option<(Published, Published)> {
    let col = dataset_column(dataset)?;
    TABLE1
        .iter()
        .find(|(m, e, _)| *m == method && *e == embedding)
        .map(|(_, _, v)| v[col])
}

/// Table 3: process GPU memory allocated (GB), one-hot, per method and dataset.
pub fn table3_gb(dataset: &str, method: &str) -> Option<f64> {
    let col = dataset_column(dataset)?;
    let row: [f64; 3] = match method {
        "backprop" => [0.87, 1.17, 1.73],
        "noprop-dt" => [0.49, 0.64, 1.23],
        "adjoint" => [2.32, 6.23, 6.45],
        "noprop-ct" => [1.05, 0.45, 0.50],
        "noprop-fm" => [1.06, 0.44, 0.49],
        _ => return None,
    };
    Some(row[col])
}

/// Table 5: parameters per block in millions, (DT, CT) columns, for the
/// dataset and embedding (no CT count for Tiny ImageNet, v2's only
/// Tiny ImageNet model being DT).
pub fn table5_millions(dataset: &str, embedding: &str) -> Option<(f64, Option<f64>)> {
    Some(match (dataset, embedding) {
        ("mnist", "one-hot") | ("mnist", "dim20") => (0.92, Some(0.87)),
        ("mnist", "prototype") => (1.40, Some(1.48)),
        ("cifar10", "one-hot") => (1.22, Some(1.16)),
        ("cifar10", "dim20") => (1.22, Some(1.17)),
        ("cifar10", "prototype") => (1.99, Some(2.07)),
        ("cifar100", "one-hot") => (1.25, Some(1.20)),
        ("cifar100", "dim20") => (1.23, Some(1.18)),
        ("cifar100", "prototype") => (2.00, Some(2.08)),
        ("tiny-imagenet", "one-hot") => (2.45, None),
        ("tiny-imagenet", "prototype") => (4.30, None),
        _ => return None,
    })
}

/// Table 2 (v2 only) — Tiny ImageNet, discrete time: (train, test)
/// accuracy (%) of a method and embedding, mean ± s.e. over 3 seeds × 5
/// inference runs.
pub fn table2(method: &str, embedding: &str) -> Option<(Published, Published)> {
    Some(match (method, embedding) {
        ("backprop", "one-hot") => (p(75.66, 33.67), p(23.83, 6.7)),
        ("backprop", "prototype") => (p(99.82, 0.02), p(31.26, 0.1)),
        ("noprop-dt", "one-hot") => (p(69.78, 1.71), p(26.55, 0.4)),
        ("noprop-dt", "prototype") => (p(78.45, 0.97), p(25.65, 0.19)),
        _ => return None,
    })
}

/// Figure 6 (v1: Figure 4): NoProp-DT test accuracy with the softmax
/// classifier (Eq. 14) and the posterior one (Eqs. 15–16), per embedding.
/// The softmax bars are Table 1's values; the posterior ones are read off
/// the plot (to about ±0.02 on MNIST, ±0.05 on CIFAR), so they are
/// approximate.
pub fn fig6(dataset: &str, embedding: &str) -> Option<(Published, Published)> {
    let e = ["one-hot", "dim20", "prototype"]
        .iter()
        .position(|x| *x == embedding)?;
    let rows: [[(Published, Published); 3]; 3] = [
        [
            (p(99.47, 0.05), p(99.46, 0.06)),
            (p(99.49, 0.04), p(99.48, 0.04)),
            (p(99.54, 0.04), p(99.49, 0.03)),
        ],
        [
            (p(79.25, 0.28), p(79.31, 0.36)),
            (p(79.12, 0.37), p(79.03, 0.21)),
            (p(80.54, 0.20), p(81.33, 0.38)),
        ],
        [
            (p(45.93, 0.46), p(45.96, 0.38)),
            (p(45.19, 0.22), p(45.47, 0.52)),
            (p(46.06, 0.25), p(45.89, 0.24)),
        ],
    ];
    Some(rows[dataset_column(dataset)?][e])
}

/// Figure 7 (v1: Figure 5): NoProp-DT test accuracy with an embedding of
/// the image dimension started orthogonally, from prototypes or at random.
/// The prototype bar is Table 1's NoProp-DT (prototype) value; the others
/// are read off the plot, so they are approximate.
pub fn fig7(dataset: &str, init: &str) -> Option<Published> {
    let i = ["orthogonal", "prototype", "random"]
        .iter()
        .position(|x| *x == init)?;
    let rows: [[Published; 3]; 3] = [
        [p(99.51, 0.03), p(99.54, 0.04), p(99.54, 0.03)],
        [p(80.91, 0.36), p(80.54, 0.20), p(80.80, 0.21)],
        [p(46.17, 0.56), p(46.06, 0.25), p(45.70, 0.43)],
    ];
    Some(rows[dataset_column(dataset)?][i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_match_paper_md() {
        let (tr, te) = table1("cifar10", "noprop-dt", "prototype").expect("row");
        assert_eq!((tr.mean, te.mean, te.se), (97.23, 80.54, 0.2));
        assert!(table1("fashion-mnist", "noprop-dt", "one-hot").is_none());
        assert!(table1("mnist", "adjoint", "dim20").is_none());
        assert_eq!(table3_gb("cifar100", "adjoint"), Some(6.45));
        assert_eq!(
            table5_millions("mnist", "prototype"),
            Some((1.40, Some(1.48)))
        );
        assert_eq!(
            table5_millions("tiny-imagenet", "one-hot"),
            Some((2.45, None))
        );
        let (tr, te) = table2("noprop-dt", "prototype").expect("table 2 row");
        assert_eq!((tr.mean, te.mean, te.se), (78.45, 25.65, 0.19));
        assert!(table2("noprop-dt", "dim20").is_none());
        // Figure 6's softmax bars are Table 1's NoProp-DT test values.
        for d in ["mnist", "cifar10", "cifar100"] {
            for e in ["one-hot", "dim20", "prototype"] {
                let (soft, _) = fig6(d, e).expect("fig6");
                assert_eq!(Some(soft), table1(d, "noprop-dt", e).map(|r| r.1));
            }
            // Figure 7's prototype bar is Table 1's prototype value.
            assert_eq!(
                fig7(d, "prototype"),
                table1(d, "noprop-dt", "prototype").map(|r| r.1)
            );
        }
        assert_eq!(fig6("cifar10", "prototype").map(|v| v.1.mean), Some(81.33));
        assert_eq!(fig7("cifar100", "random"), Some(p(45.70, 0.43)));
        assert!(fig6("fashion-mnist", "one-hot").is_none());
    }
}
