//! Parameter-free layers and the [`Sequential`] container.

use noprop_tensor::ops;
use noprop_tensor::Tensor;

use crate::module::prefixed;
use crate::{Error, Mode, Module, ParamMut, Result};

/// `y = max(x, 0)`.
#[derive(Clone, Debug, Default)]
pub struct ReLU {
    y: Option<Tensor>,
}

impl ReLU {
    /// A ReLU.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for ReLU {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let y = ops::relu(x)?;
        if mode == Mode::Train {
            self.y = Some(y.clone());
        }
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let y = self
            .y
            .take()
            .ok_or(Error::NoForwardCache { layer: "ReLU" })?;
        Ok(ops::relu_backward(dy, &y)?)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        Vec::new()
    }
}

/// 2×2 max-pooling, stride 2, floor rounding.
#[derive(Debug, Default)]
pub struct MaxPool2d {
    cache: Option<(ops::PoolIndices, Vec<usize>)>,
}

impl MaxPool2d {
    /// A 2×2/2 max-pool.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for MaxPool2d {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (y, idx) = ops::max_pool2d(x)?;
        if mode == Mode::Train {
            self.cache = Some((idx, x.shape().to_vec()));
        }
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let (idx, shape) = self
            .cache
            .take()
            .ok_or(Error::NoForwardCache { layer: "MaxPool2d" })?;
        Ok(ops::max_pool2d_grad(dy, &idx, &shape)?)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        Vec::new()
    }
}

/// `[N, d1, d2, ...]` to `[N, d1·d2·...]`.
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    shape: Option<Vec<usize>>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for Flatten {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if x.rank() == 0 {
            return Err(Error::BadInput {
                layer: "Flatten",
                expected: "a batch [N, ...]".into(),
                got: x.shape().to_vec(),
            });
        }
        let n = x.dim(0);
        let rest: usize = x.shape()[1..].iter().product();
        if mode == Mode::Train {
            self.shape = Some(x.shape().to_vec());
        }
        Ok(x.clone().reshape(&[n, rest])?)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let shape = self
            .shape
            .take()
            .ok_or(Error::NoForwardCache { layer: "Flatten" })?;
        Ok(dy.clone().reshape(&shape)?)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        Vec::new()
    }
}

/// Named layers applied in order; backward runs them in reverse.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module>)>,
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.layers.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Sequential {
    /// An empty container.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a layer called `name` (its parameters become `name.weight`, ...).
    pub fn push(mut self, name: &str, layer: impl Module + 'static) -> Self {
        self.layers.push((name.to_string(), Box::new(layer)));
        self
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = x.clone();
        for (_, l) in &mut self.layers {
            h = l.forward(&h, mode)?;
        }
        Ok(h)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let mut g = dy.clone();
        for (_, l) in self.layers.iter_mut().rev() {
            g = l.backward(&g)?;
        }
        Ok(g)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        self.layers
            .iter_mut()
            .flat_map(|(n, l)| prefixed(n, l.params()))
            .collect()
    }

    fn set_rng_key(&mut self, key: u64) {
        for (_, l) in &mut self.layers {
            l.set_rng_key(key);
        }
    }

    fn buffers(&mut self) -> Vec<(String, &mut Tensor)> {
        self.layers
            .iter_mut()
            .flat_map(|(n, l)| {
                let n = n.clone();
                l.buffers()
                    .into_iter()
                    .map(move |(b, t)| (format!("{n}.{b}"), t))
            })
            .collect()
    }
}
