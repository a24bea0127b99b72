//! One [`Method`] per algorithm, and building one from a training request
//! (fresh or resumed) or from a checkpoint.

mod adjoint;
mod backprop;
mod block_dt;
mod cont;
pub use cont::EPOCH_EVAL_STEPS;
mod data_parallel;
mod dt;
mod relative;

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

pub use adjoint::Adj;
pub use backprop::Bp;
pub use block_dt::{owned_blocks, BlockParallelDt};
pub use cont::{Cont, Infer};
pub use data_parallel::DataParallel;
pub use dt::Dt;
pub use relative::Rel;

use noprop_baselines::{Adjoint, Backprop, Relative};
use noprop_models::{
    ClassEmbedding, ContMethod, EmbeddingInit, EmbeddingKind, NoPropCont, NoPropDt,
};
use tracing::info;

use crate::comm::Communicator;
use crate::config::{EvalConfig, TrainConfig};
use crate::data::flat_images;
use crate::error::{Error, Result};
use crate::method::Method;
use crate::options::{DistributedArg, MethodName};
use crate::progress::{Progress, PROGRESS_KEY};
use crate::trainer::Setup;

/// The class embedding a fresh run starts from (prototype: docs/DECISIONS.md § 13;
/// a `dimN` embedding as `--embedding-init` asks).
fn new_embedding(s: &Setup, seed: u64) -> Result<ClassEmbedding> {
    Ok(match s.embedding {
        EmbeddingKind::OneHot => ClassEmbedding::one_hot(s.classes),
        EmbeddingKind::Learned { dim } => match s.embedding_init {
            None => ClassEmbedding::learned(s.classes, dim, seed),
            Some(EmbeddingInit::Orthogonal) => ClassEmbedding::orthogonal(s.classes, dim, seed)
                .map_err(|e| Error::config(format!("--embedding-init orthogonal: {e}")))?,
            Some(EmbeddingInit::Random) => ClassEmbedding::random(s.classes, dim, seed),
            Some(EmbeddingInit::Prototype) => {
                let (c, h, w) = s.image;
                if dim != c * h * w {
                    return Err(Error::config(format!(
                        "--embedding-init prototype needs the image dimension: --embedding dim{} for {c}×{h}×{w} images, not dim{dim}",
                        c * h * w
                    )));
                }
                let (x, y) = flat_images(&s.data.train, &s.norm)?;
                let p = ClassEmbedding::prototype(&x, &y, s.classes, 1000, seed)?;
                ClassEmbedding::from_saved(s.embedding, &p.weight)?
            }
        },
        EmbeddingKind::Prototype => {
            let (x, y) = flat_images(&s.data.train, &s.norm)?;
            ClassEmbedding::prototype(&x, &y, s.classes, 1000, seed)?
        }
    })
}

/// The starting `W_Embed` of a run whose embedding has the image dimension
/// (`None` for other embeddings): the fresh model's, or — when the run
/// resumed — the same deterministic start rebuilt.
pub(crate) fn initial_image_embedding(
    c: &TrainConfig,
    s: &Setup,
    model: &dyn Method,
    resumed: bool,
) -> Result<Option<Vec<f32>>> {
    let (ch, h, w) = s.image;
    let Some(weight) = model.embedding_weight() else {
        return Ok(None);
    };
    if weight.rank() != 2 || weight.dim(1) != ch * h * w {
        return Ok(None);
    }
    let start = if resumed {
        new_embedding(s, c.seed)?.weight
    } else {
        weight.clone()
    };
    Ok(Some(start.try_to_vec_f32()?))
}

/// With `resume` and an existing checkpoint, `load` it and check that it
/// was written with the requested configuration; otherwise build a `fresh`
/// model.
fn resume_or_new<M, C: PartialEq + std::fmt::Debug>(
    c: &TrainConfig,
    ckpt: &Path,
    requested: &C,
    load: impl FnOnce(&Path) -> Result<(M, HashMap<String, String>)>,
    config_of: impl Fn(&M) -> &C,
    fresh: impl FnOnce() -> Result<M>,
) -> Result<(M, Progress)> {
    if !(c.resume && ckpt.exists()) {
        return Ok((fresh()?, Progress::default()));
    }
    let (m, meta) = load(ckpt)?;
    if config_of(&m) != requested {
        return Err(Error::Checkpoint {
            path: ckpt.to_path_buf(),
            why: format!(
                "the checkpoint was written with a different configuration; remove it or run with the same flags\n  checkpoint: {:?}\n  requested:  {:?}",
                config_of(&m),
                requested
            ),
        });
    }
    let p = progress_of(ckpt, &meta)?;
    info!(
        "resuming from {} at epoch {}, batch {}",
        ckpt.display(),
        p.epoch + 1,
        p.batch
    );
    Ok((m, p))
}

/// The [`Progress`] recorded in a checkpoint's metadata.
pub(crate) fn progress_of(path: &Path, meta: &HashMap<String, String>) -> Result<Progress> {
    match meta.get(PROGRESS_KEY) {
        Some(s) => serde_json::from_str(s).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            why: format!("bad progress metadata: {e}"),
        }),
        None => Err(Error::Checkpoint {
            path: path.to_path_buf(),
            why: "no progress metadata (not written by noprop train)".into(),
        }),
    }
}

/// The model a training run starts from: fresh, or its checkpoint with
/// `resume`; with `--distributed`, spread over `comm`'s ranks.
pub(crate) fn for_training(
    c: &TrainConfig,
    s: &Setup,
    comm: &Rc<dyn Communicator>,
) -> Result<(Box<dyn Method>, Progress)> {
    let (model, p) = single(c, s, comm)?;
    if c.distributed == Some(DistributedArg::Data) {
        return Ok((Box::new(DataParallel::new(model, comm.clone())?), p));
    }
    Ok((model, p))
}

/// [`for_training`] before data-parallel wrapping.
fn single(
    c: &TrainConfig,
    s: &Setup,
    comm: &Rc<dyn Communicator>,
) -> Result<(Box<dyn Method>, Progress)> {
    let (image, classes, ckpt) = (s.image, s.classes, s.ckpt.as_path());
    Ok(match c.method {
        MethodName::NopropDt => {
            let cfg = dt::config(c, image, classes);
            let (model, p) = resume_or_new(
                c,
                ckpt,
                &cfg,
                |p| Ok(NoPropDt::load(p)?),
                |m: &NoPropDt| &m.config,
                || Ok(NoPropDt::new(cfg.clone(), new_embedding(s, c.seed)?)?),
            )?;
            let noise = c.inference_noise;
            let dt = Dt { model, noise };
            if c.distributed == Some(DistributedArg::Block) {
                (Box::new(BlockParallelDt::new(dt, comm.clone())?), p)
            } else {
                (Box::new(dt), p)
            }
        }
        MethodName::NopropCt | MethodName::NopropFm => {
            let cfg = cont::config(c, image, classes);
            let (epoch_inf, final_inf) = cont::inference(c, cfg.method)?;
            let (model, p) = resume_or_new(
                c,
                ckpt,
                &cfg,
                |p| Ok(NoPropCont::load(p)?),
                |m: &NoPropCont| &m.config,
                || Ok(NoPropCont::new(cfg.clone(), new_embedding(s, c.seed)?)?),
            )?;
            let m = Cont {
                model,
                epoch_inf,
                final_inf,
            };
            (Box::new(m), p)
        }
        MethodName::Backprop => {
            let cfg = backprop::config(c, image, classes);
            let (model, p) = resume_or_new(
                c,
                ckpt,
                &cfg,
                |p| Ok(Backprop::load(p)?),
                |m: &Backprop| &m.config,
                || Ok(Backprop::new(cfg.clone(), new_embedding(s, c.seed)?)?),
            )?;
            (Box::new(Bp { model }), p)
        }
        MethodName::Adjoint => {
            let cfg = adjoint::config(c, image, classes);
            let steps = cfg.steps;
            let (model, p) = resume_or_new(
                c,
                ckpt,
                &cfg,
                |p| Ok(Adjoint::load(p)?),
                |m: &Adjoint| &m.config,
                || Ok(Adjoint::new(cfg.clone())?),
            )?;
            let epoch = p.epoch;
            let m = Adj::new(model, c.eval_steps.unwrap_or(steps), steps, epoch);
            (Box::new(m), p)
        }
        m => {
            let kind = m
                .relative()
                .ok_or_else(|| Error::config(format!("{m}: no training path (this is a bug)")))?;
            let cfg = relative::config(c, kind, image, classes);
            let (model, p) = resume_or_new(
                c,
                ckpt,
                &cfg,
                |p| Ok(Relative::load(p)?),
                |m: &Relative| &m.config,
                || Ok(Relative::new(cfg.clone())?),
            )?;
            (Box::new(Rel { model }), p)
        }
    })
}

/// The method a checkpoint records in its metadata (`noprop-dt` for early
/// NoProp-DT checkpoints that recorded none).
pub fn checkpoint_method(path: &Path) -> Result<MethodName> {
    // The header only: the model's own load reads the tensors afterwards.
    let meta = noprop_nn::io::read_metadata(path)?;
    match meta.get("method") {
        None => Ok(MethodName::NopropDt),
        Some(m) => m.parse().map_err(|_| Error::Checkpoint {
            path: path.to_path_buf(),
            why: format!("unknown method `{m}` in the metadata"),
        }),
    }
}

/// Load a checkpoint of any method for evaluation, with the inference
/// options of `c`; returns the method and the checkpoint's metadata.
pub(crate) fn for_eval(c: &EvalConfig) -> Result<(Box<dyn Method>, HashMap<String, String>)> {
    let path = c.checkpoint.as_path();
    let method = checkpoint_method(path)?;
    let only_cont = |set: bool, flag: &str| -> Result<()> {
        if set {
            return Err(Error::config(format!(
                "{flag} applies to noprop-ct and noprop-fm checkpoints only, not to {method}"
            )));
        }
        Ok(())
    };
    if !method.is_continuous() {
        only_cont(c.sampler.is_some(), "--sampler")?;
        only_cont(!c.image_cache, "--no-image-cache")?;
    }
    if !c.inference_noise && method.relative().is_some() {
        return Err(Error::config(format!(
            "{method} has no inference noise: --no-inference-noise does not apply"
        )));
    }
    if !c.inference_noise && matches!(method, MethodName::Backprop | MethodName::Adjoint) {
        return Err(Error::config(format!(
            "{method} always starts inference from z_0 ~ N(0, I): --no-inference-noise is not supported"
        )));
    }
    if c.steps.is_some()
        && (matches!(method, MethodName::NopropDt | MethodName::Backprop)
            || method.relative().is_some())
    {
        return Err(Error::config(format!(
            "--steps does not apply to a {method} checkpoint (T is fixed by training)"
        )));
    }
    Ok(match method {
        MethodName::NopropDt => {
            let (model, meta) = NoPropDt::load(path)?;
            let noise = c.inference_noise;
            (Box::new(Dt { model, noise }), meta)
        }
        MethodName::NopropCt | MethodName::NopropFm => {
            let (model, meta) = NoPropCont::load(path)?;
            let method: ContMethod = model.config.method;
            let inf = Infer {
                sampler: cont::sampler_for(method, c.sampler)?,
                steps: c.steps.unwrap_or(1000),
                noise: c.inference_noise,
                cached: c.image_cache,
            };
            let m = Cont {
                model,
                epoch_inf: inf,
                final_inf: inf,
            };
            (Box::new(m), meta)
        }
        MethodName::Backprop => {
            let (model, meta) = Backprop::load(path)?;
            (Box::new(Bp { model }), meta)
        }
        MethodName::Adjoint => {
            let (model, meta) = Adjoint::load(path)?;
            let steps = c.steps.unwrap_or(model.config.steps);
            (Box::new(Adj::new(model, steps, steps, 0)), meta)
        }
        _ => {
            let (model, meta) = Relative::load(path)?;
            (Box::new(Rel { model }), meta)
        }
    })
}
