#!/usr/bin/env python3
"""Load a noprop-rs NoProp-DT checkpoint into PyTorch and evaluate it.

The checkpoint is the safetensors file `noprop train --method noprop-dt`
writes (`last.safetensors`): an 8-byte little-endian header length, a JSON
header (tensor dtypes, shapes and byte offsets, plus `__metadata__` holding
the model's `config` as JSON and its `method`), then the raw little-endian
data. It is parsed by hand here, so only torch and numpy are needed.

The model is the PyTorch transcription of the DT block in
`noprop_dt_torch.py` (`Block`), T copies of it, plus the output classifier
and the class embedding. Every tensor of the checkpoint is used and every
tensor of the PyTorch model is filled, or the script fails:

* block parameters and batch-norm running statistics go into the modules
  through `load_state_dict(strict=True)`; the name mapping is the table of
  docs/PYTORCH.md (no tensor needs a transposition: `Linear` weights are
  `[out, in]` and conv weights `[out, in, kh, kw]` in both);
* the optimiser moments (`opt.…`) go into one `torch.optim.AdamW` per block
  and one for the shared parameters, so training could continue in PyTorch;
* `step` (mini-batches trained) is reported.

Inference follows Eq. 3 of arXiv 2503.24322 with the schedule of
docs/DECISIONS.md § 1: `z_0 ~ N(0, I)`, then for t = 1 … T
`z_t = a_t·û_θt(z_{t−1}, x) + b_t·z_{t−1} + √c_t·ε_t`, batch-norm in
evaluation mode, and `ŷ = argmax f_θout(z_T)` (or the posterior read-out of
Eqs. 15–16 when the checkpoint uses it). `--noise off` is the deterministic
variant of `noprop eval --no-inference-noise` (`z_0 = 0`, `ε_t = 0`).

Data: MNIST-format IDX files (raw or .gz) in `--data`. `--split
mnist-test-split` (the default) reads `t10k-images-idx3-ubyte` and
`t10k-labels-idx1-ubyte` and splits them like noprop-rs: the first 8,000
images are the training part, the last 2,000 the test part; `--split idx`
reads `train-*` and `t10k-*` (MNIST, Fashion-MNIST). Inputs are normalised
exactly as noprop-datasets does it: `(x/255 − mean) / std` with the mean and
standard deviation of all pixels of the training part (`--norm-limit-train
N`: of its first N images, which is what `noprop train --limit-train N`
uses and records in the checkpoint for `noprop eval`). `--limit N` evaluates the
first N test images (`noprop train --limit-test N`).

  python3 dt_checkpoint_torch.py CHECKPOINT --data DIR [--noise both]
      [--runs 5] [--limit N] [--reference-predictions ours.json]
      [--predictions-out torch.json]

Prints one JSON object: accuracies with and without noise, the number of
tensors mapped, and (with --reference-predictions, a JSON list of class
indices in test order) the agreement of the noise-free predictions with it.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from noprop_dt_torch import Block, alpha_bar  # noqa: E402  (the transcription)

# ---------------------------------------------------------------------------
# safetensors, by hand
# ---------------------------------------------------------------------------

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16,
           "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    """(metadata dict, {name: numpy array}) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    data = memoryview(raw)[8 + n:]
    tensors = {}
    for name, h in header.items():
        dt = _DTYPES[h["dtype"]]
        begin, end = h["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(dt).newbyteorder("<"))
        tensors[name] = arr.reshape(h["shape"]).copy()
    return meta, tensors


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------

def image_path(c, hw):
    """The DT image path, laid out exactly like `Block.img`."""
    s = ((hw - 2) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(c, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Dropout(0.2),
        nn.Conv2d(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Flatten(), nn.Linear(128 * s * s, 256), nn.BatchNorm1d(256))


class PrototypeBlock(Block):
    """`Block` for the prototype embedding (d = C·H·W): the latent, reshaped
    to C×H×W, goes through its own copy of the image path (`zimg`) instead of
    the residual label MLP."""

    def __init__(self, c, hw, m):
        super().__init__(c, hw, m, c * hw * hw)
        del self.l1, self.l2
        self.zimg = image_path(c, hw)
        self.chw = (c, hw, hw)

    def forward(self, x, z):
        zi = z.reshape(z.shape[0], *self.chw)
        return self.head(torch.cat([self.img(x), self.zimg(zi)], 1))


class NoPropDT(nn.Module):
    """T blocks, the output classifier `f_θout` and `W_Embed` (a parameter,
    learned or not)."""

    def __init__(self, cfg):
        super().__init__()
        c, h, w = cfg["image"]
        if h != w:
            raise SystemExit(f"square images only (got {h}x{w})")
        self.m = cfg["classes"]
        self.T = cfg["steps"]
        emb = cfg["embedding"]
        if emb == "one-hot":
            self.d, self.prototype = self.m, False
        elif emb == "prototype":
            self.d, self.prototype = c * h * w, True
        elif isinstance(emb, dict) and "learned" in emb:
            self.d, self.prototype = emb["learned"]["dim"], False
        else:
            raise SystemExit(f"unknown embedding {emb!r}")
        self.learned_embedding = emb != "one-hot"
        self.blocks = nn.ModuleList(
            PrototypeBlock(c, h, self.m) if self.prototype else Block(c, h, self.m, self.d)
            for _ in range(self.T))
        self.classifier = nn.Linear(self.d, self.m)
        self.embed = nn.Parameter(torch.zeros(self.m, self.d))
        kind = cfg.get("classifier", {"kind": "softmax"})
        self.readout = kind.get("kind", "softmax")
        self.sigma = kind.get("sigma", 1.0)
        ab = alpha_bar(self.T)
        self.coeffs = []
        for t in range(1, self.T + 1):
            abt, abp = ab[t], ab[t - 1]
            alp = abp / abt  # α_{t−1} = ᾱ_{t−1} / ᾱ_t
            self.coeffs.append((math.sqrt(abt) * (1 - alp) / (1 - abp),
                                math.sqrt(alp) * (1 - abt) / (1 - abp),
                                (1 - abt) * (1 - alp) / (1 - abp)))

    def class_scores(self, z):
        f = self.classifier(z)
        if self.readout == "softmax":  # Eq. 14
            return f
        # Eqs. 15–16: ỹ = softmax(f)·W, scores −‖ỹ − u_y‖² / (2σ²)
        yt = F.softmax(f, 1) @ self.embed
        return -torch.cdist(yt, self.embed).pow(2) / (2 * self.sigma ** 2)

    @torch.no_grad()
    def predict(self, x, generator=None):
        """Eq. 3; `generator=None` is the noise-free mean path."""
        self.eval()
        b = x.shape[0]
        if generator is None:
            z = torch.zeros(b, self.d)
        else:
            z = torch.randn(b, self.d, generator=generator)
        for t, (a, bb, c) in enumerate(self.coeffs, start=1):
            u_hat = F.softmax(self.blocks[t - 1](x, z), 1) @ self.embed
            nz = a * u_hat + bb * z
            if generator is not None:
                nz = nz + math.sqrt(c) * torch.randn(b, self.d, generator=generator)
            z = nz
        return self.class_scores(z).argmax(1)


# ---------------------------------------------------------------------------
# name mapping: ours -> PyTorch (docs/PYTORCH.md)
# ---------------------------------------------------------------------------

# Layers of the image path: our name -> index in the Sequential.
IMG = {"conv1": 0, "conv2": 4, "conv3": 7, "fc": 12, "bn": 13}
# The residual label MLP: our name -> (Sequential, index).
LABEL = {"fc1": ("l1", 0), "bn1": ("l1", 1), "fc2": ("l2", 0), "bn2": ("l2", 1),
         "fc3": ("l2", 3), "bn3": ("l2", 4)}
HEAD = {"fc1": 0, "bn1": 1, "fc2": 3, "bn2": 4, "fc3": 6}


def torch_name(ours, prototype):
    """The PyTorch state-dict key of one of our model tensors, or None."""
    if ours == "embed.weight":
        return "embed"
    if ours.startswith("classifier.fc."):
        return "classifier." + ours[len("classifier.fc."):]
    parts = ours.split(".")
    if not parts[0].startswith("block") or len(parts) != 4:
        return None
    t = int(parts[0][len("block"):])
    path, layer, leaf = parts[1], parts[2], parts[3]
    pre = f"blocks.{t - 1}."
    if path == "img":
        return f"{pre}img.{IMG[layer]}.{leaf}"
    if path == "label" and prototype:
        return f"{pre}zimg.{IMG[layer]}.{leaf}"
    if path == "label":
        seq, i = LABEL[layer]
        return f"{pre}{seq}.{i}.{leaf}"
    if path == "head":
        return f"{pre}head.{HEAD[layer]}.{leaf}"
    return None


def load_checkpoint(path):
    meta, tensors = read_safetensors(path)
    method = meta.get("method", "noprop-dt")
    if method != "noprop-dt":
        raise SystemExit(f"{path}: a {method} checkpoint, not noprop-dt")
    cfg = json.loads(meta["config"])
    model = NoPropDT(cfg)
    used = set()

    # 1. model tensors, strictly
    sd = {}
    for name, arr in tensors.items():
        if name.startswith("opt.") or name == "step":
            continue
        key = torch_name(name, model.prototype)
        if key is None:
            raise SystemExit(f"{path}: no PyTorch place for tensor `{name}` {list(arr.shape)}")
        sd[key] = torch.from_numpy(arr.astype(np.float32, copy=False))
        used.add(name)
    # Batch-norm's `num_batches_tracked` is not stored by noprop-rs: each
    # block's running statistics were updated once per step of that block,
    # which is its optimiser's step count.
    for key, buf in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            t = int(key.split(".")[1]) + 1
            sd[key] = torch.tensor(int(tensors[f"opt.block{t}.step"].item()), dtype=buf.dtype)
    for key, ref in model.state_dict().items():
        if key in sd and tuple(sd[key].shape) != tuple(ref.shape):
            raise SystemExit(f"`{key}`: checkpoint shape {list(sd[key].shape)}, "
                             f"PyTorch {list(ref.shape)}")
    model.load_state_dict(sd, strict=True)

    # 2. optimiser state: one AdamW per block, one for the shared parameters
    lr, wd = cfg.get("lr", 1e-3), cfg.get("weight_decay", 1e-3)
    inv = {torch_name(n, model.prototype): n for n in used}
    params = dict(model.named_parameters())
    optims = {}
    for t in range(1, model.T + 1):
        names = [n for n, _ in model.blocks[t - 1].named_parameters()]
        # Block optimisers name parameters without the `block{t}.` prefix.
        optims[f"block{t}"] = [(f"blocks.{t - 1}.{n}",
                                inv[f"blocks.{t - 1}.{n}"][len(f"block{t}."):]) for n in names]
    shared = [("classifier.weight", "classifier.fc.weight"), ("classifier.bias", "classifier.fc.bias")]
    if any(k.startswith("opt.shared.embed.weight.") for k in tensors):
        shared.append(("embed", "embed.weight"))
    optims["shared"] = shared
    torch_optims = {}
    for group, plist in optims.items():
        prefix = f"opt.{group}."
        opt = torch.optim.AdamW([params[p] for p, _ in plist], lr=lr, weight_decay=wd)
        state = opt.state_dict()
        step = float(tensors[prefix + "step"].item())
        used.add(prefix + "step")
        for i, (_, ours) in enumerate(plist):
            m_key, v_key = f"{prefix}{ours}.exp_avg", f"{prefix}{ours}.exp_avg_sq"
            if m_key not in tensors:
                if step == 0:
                    continue
                raise SystemExit(f"{path}: missing optimiser state `{m_key}`")
            state["state"][i] = {
                "step": torch.tensor(step),
                "exp_avg": torch.from_numpy(tensors[m_key].astype(np.float32)),
                "exp_avg_sq": torch.from_numpy(tensors[v_key].astype(np.float32)),
            }
            used.update((m_key, v_key))
        opt.load_state_dict(state)
        torch_optims[group] = opt
    used.add("step")
    unused = sorted(set(tensors) - used)
    if unused:
        raise SystemExit(f"{path}: tensors not mapped to PyTorch: {unused}")
    n_model = sum(1 for n in tensors if not n.startswith("opt.") and n != "step")
    info = {"config": cfg, "method": method, "training_steps": int(tensors["step"].item()),
            "tensors": len(tensors), "model_tensors": n_model,
            "optimizer_tensors": len(tensors) - n_model - 1,
            "params_per_block": sum(p.numel() for p in model.blocks[0].parameters())}
    return model, torch_optims, info


# ---------------------------------------------------------------------------
# data, as noprop-datasets reads and normalises it
# ---------------------------------------------------------------------------

MNIST_TEST_SPLIT_TRAIN = 8000


def read_idx(path):
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(d, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    raise SystemExit(f"{stem}[.gz] not in {d}")


def load_split(data, split):
    """(train images, test images, test labels) as uint8 arrays [N, 1, H, W]."""
    if split == "mnist-test-split":
        x = read_idx(find(data, "t10k-images-idx3-ubyte"))
        y = read_idx(find(data, "t10k-labels-idx1-ubyte"))
        if len(x) < MNIST_TEST_SPLIT_TRAIN:
            raise SystemExit(f"{data}: {len(x)} images, fewer than {MNIST_TEST_SPLIT_TRAIN}")
        k = MNIST_TEST_SPLIT_TRAIN
        return x[:k, None], x[k:, None], y[k:].astype(np.int64)
    xtr = read_idx(find(data, "train-images-idx3-ubyte"))
    xte = read_idx(find(data, "t10k-images-idx3-ubyte"))
    yte = read_idx(find(data, "t10k-labels-idx1-ubyte"))
    return xtr[:, None], xte[:, None], yte.astype(np.int64)


def normalization(train):
    """Per-channel mean/std on the [0, 1] scale, as `Dataset::channel_stats`:
    exact integer sums, f64 arithmetic, rounded to f32."""
    c = train.shape[1]
    mean, std = [], []
    for ch in range(c):
        p = train[:, ch].astype(np.uint64)
        n = float(p.size)
        m = float(p.sum()) / n / 255.0
        var = max(float((p * p).sum()) / n / (255.0 * 255.0) - m * m, 0.0)
        s = math.sqrt(var)
        mean.append(np.float32(m))
        std.append(np.float32(s) if s > 1e-12 else np.float32(1.0))
    return mean, std


def normalize(images, mean, std):
    """`(v/255 − mean) / std` per channel through a 256-entry table computed
    in f64 and rounded to f32, as `Batches` does."""
    out = np.empty(images.shape, dtype=np.float32)
    for ch in range(images.shape[1]):
        lut = ((np.arange(256, dtype=np.float64) / 255.0 - np.float64(mean[ch]))
               / np.float64(std[ch])).astype(np.float32)
        out[:, ch] = lut[images[:, ch]]
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="folder with the IDX files (raw or .gz)")
    p.add_argument("--split", default="mnist-test-split", choices=["mnist-test-split", "idx"])
    p.add_argument("--limit", type=int, default=0, help="first N test images (0 = all)")
    p.add_argument("--norm-limit-train", type=int, default=0,
                   help="normalise with the first N training images (0 = all; use the --limit-train of the run)")
    p.add_argument("--noise", default="both", choices=["on", "off", "both"])
    p.add_argument("--runs", type=int, default=1, help="stochastic inference runs")
    p.add_argument("--seed", type=int, default=0, help="seed of the inference noise")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference-predictions", help="JSON list of class indices to compare with")
    p.add_argument("--predictions-out", help="write the noise-free predictions (JSON list)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    model, _optims, info = load_checkpoint(a.checkpoint)
    train, xte, yte = load_split(a.data, a.split)
    if a.norm_limit_train > 0:
        train = train[:a.norm_limit_train]
    if a.limit > 0:
        xte, yte = xte[:a.limit], yte[:a.limit]
    mean, std = normalization(train)
    x = normalize(xte, mean, std)
    y = torch.from_numpy(yte)

    def run(generator):
        preds = [model.predict(x[i:i + a.batch], generator) for i in range(0, len(y), a.batch)]
        return torch.cat(preds)

    out = {"impl": "pytorch", "torch": torch.__version__, "checkpoint": a.checkpoint,
           "data": a.data, "split": a.split, "test_images": len(y),
           "normalization": {"mean": [float(m) for m in mean], "std": [float(s) for s in std],
                             "train_images": len(train)}}
    out.update({k: v for k, v in info.items() if k != "config"})
    out["embedding"] = info["config"]["embedding"]
    if a.noise in ("off", "both"):
        pred = run(None)
        out["noise_free_accuracy"] = (pred == y).double().mean().item()
        if a.predictions_out:
            with open(a.predictions_out, "w") as f:
                json.dump(pred.tolist(), f)
        if a.reference_predictions:
            with open(a.reference_predictions) as f:
                ref = torch.tensor(json.load(f))
            if len(ref) != len(pred):
                raise SystemExit(f"{len(ref)} reference predictions for {len(pred)} images")
            out["agreement"] = (ref == pred).double().mean().item()
            out["disagreements"] = int((ref != pred).sum().item())
    if a.noise in ("on", "both"):
        g = torch.Generator().manual_seed(a.seed)
        runs = [(run(g) == y).double().mean().item() for _ in range(max(a.runs, 1))]
        out["noisy_accuracy_runs"] = runs
        out["noisy_accuracy"] = sum(runs) / len(runs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
