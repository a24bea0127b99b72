#!/usr/bin/env python3
"""PyTorch peer of noprop-rs's NoProp-CT and NoProp-FM, for side-by-side CPU
timing and an accuracy-fidelity comparison (its `CtNet` and data loading are
also what baselines_torch.py's adjoint baseline uses).

Transcribed from crates/models/src/ct_net.rs (+ ct_net/step.rs),
crates/models/src/ct.rs, crates/models/src/ct/{train.rs,sample.rs,config.rs},
crates/schedules/src/{learnable.rs,ode.rs}, crates/nn/src/layers/time_embedding.rs,
crates/models/src/block.rs (`image_path`, CT/FM variant), crates/models/src/embedding.rs,
crates/models/src/classifier.rs, crates/train/src/methods/cont.rs,
crates/train/src/{data.rs,trainer.rs} and crates/datasets (normalisation, splits):

* network (note G.2): image path conv 3x3·32 → ReLU → maxpool → dropout 0.2,
  conv 3x3·64 → ReLU → dropout, conv 3x3·128 → ReLU → maxpool → dropout
  (padding 0), flatten → FC 256 → ReLU (no batch-norm); label path FC(d → 256)
  → ReLU, or (prototype, d = C·H·W) z reshaped to an image through its own
  copy of the image path; time path 64-d sinusoidal embedding
  (ω_i = exp(−ln(10⁴)·i/32), t unscaled) → FC 256 → ReLU; fusion concat 768
  → FC 256 → ReLU → FC 128 → ReLU → FC m. CT: û = softmax(logits)·W_Embed;
  FM: v̂ = logits·W_Embed. PyTorch default inits, as ours.
* CT (Eq. 9): t ~ U(0,1) per row, z_t = √ᾱ(t)·u_y + √(1−ᾱ(t))·ε,
  L = (η/2)·mean SNR′(t)‖û − u_y‖² + CE(f_out(z_1), y), z_1 ~ q(z_1|y)
  + mean KL(q(z_0|y) ‖ N(0,I)), η = 1, with the learnable schedule of § 9
  (γ̃(t) = softplus(r2)ᵀ softplus(softplus(r1)·t + b1) + b2, width 64,
  γ0 = −7, γ1 = 7, ᾱ = σ(−γ), analytic SNR′); the schedule gets gradients
  through ᾱ(t), ᾱ(1), ᾱ(0) and SNR′(t) (here by autograd, f64 like ours).
* FM (Eqs. 10–13): z_t = t·u_y + (1−t)·z_0, L = mean ‖v̂ − (u_y − z_0)‖²
  (summed over d), plus the anchor CE of Eq. 13 on z̃_1 = z_t + (1−t)·v̂ when
  the embedding is learned (dim20, prototype).
* embeddings: one-hot (fixed), dim20 (Gaussian rows N(0, I/d) then
  Gram–Schmidt), prototype (per class, of ≤ 1000 random members the
  normalised training image with the smallest median distance to the others).
* one torch.optim.Adam (coupled L2, as ours) lr 1e-3, wd 1e-3 over the
  network, the classifier (CT; FM only with the anchor CE), W_Embed (when
  learned) and the schedule (CT); batch 128, the last partial batch kept.
  One forward/backward of the full network per mini-batch.
* inference (sample.rs, § 17): the image path runs once per image (eval
  mode), its features pre-multiplied by the image block of the first fusion
  layer; each step runs only the label, time (one row) and fusion layers.
  CT: ancestral sampler (note D (i)) by default, FM: Euler; `--sampler
  euler|heun` for CT integrates the probability-flow ODE (note D (ii)).
  z_0 ~ N(0, I) and fresh noise at every ancestral step. Read-out: CT argmax
  of the classifier on z_1; FM the nearest class embedding. Batches of 500.
* data: x/255 normalised by the per-channel mean and population std of the
  (limited) training split; mnist-test-split = MNIST's t10k files, train =
  first 8,000, test = last 2,000; --limit-train/--limit-test keep the first K.

Differences from ours that do not change the computation: random streams
(torch's generator instead of our Philox keys), the shuffling order, and the
schedule's gradients by autograd instead of closed form. Per-epoch records
carry test accuracy only (ours also measure a train-subset accuracy; neither
counts in train_seconds).

  python3 noprop_cont_torch.py train --method ct --dataset mnist-test-split --epochs 10
  python3 noprop_cont_torch.py train --method fm --embedding dim20 --dataset fashion-mnist
  python3 noprop_cont_torch.py infer --method ct --steps 1000 --limit-test 2000

Prints one JSON object per line. Threads: torch.set_num_threads(--threads).
"""
import argparse
import gzip
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

TIME_EMBED_DIM = 64
EVAL_BATCH = 500
MNIST_TEST_SPLIT_TRAIN = 8000


# ---------------------------------------------------------------- data

def read_idx(path):
    """An IDX file (raw or .gz) as a uint8 tensor of its dimensions."""
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = bytearray(data[4 + 4 * ndim:])
    return torch.frombuffer(body, dtype=torch.uint8).reshape(dims).clone()


def find(d, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    raise FileNotFoundError(f"{stem}[.gz] not in {d}")


def load_data(args):
    """(x_train, y_train, x_test, y_test): images [N, 1, 28, 28] normalised
    as ours (statistics of the limited training split), labels int64."""
    if args.dataset == "fashion-mnist":
        d = args.fashion_dir
        xtr = read_idx(find(d, "train-images-idx3-ubyte"))
        ytr = read_idx(find(d, "train-labels-idx1-ubyte"))
        xte = read_idx(find(d, "t10k-images-idx3-ubyte"))
        yte = read_idx(find(d, "t10k-labels-idx1-ubyte"))
    else:
        d = args.mnist_test_dir
        x = read_idx(find(d, "t10k-images-idx3-ubyte"))
        y = read_idx(find(d, "t10k-labels-idx1-ubyte"))
        n = MNIST_TEST_SPLIT_TRAIN
        xtr, ytr, xte, yte = x[:n], y[:n], x[n:], y[n:]
    if args.limit_train > 0:
        xtr, ytr = xtr[:args.limit_train], ytr[:args.limit_train]
    if args.limit_test > 0:
        xte, yte = xte[:args.limit_test], yte[:args.limit_test]
    # Per-channel mean and population std of the training pixels (f64), as
    # Dataset::channel_stats; y = (x/255 − mean)/std.
    px = xtr.double() / 255.0
    mean = px.mean().item()
    std = px.std(correction=0).item()
    std = std if std > 1e-12 else 1.0
    norm = lambda v: ((v.float() / 255.0 - mean) / std).unsqueeze(1).contiguous()
    return norm(xtr), ytr.long(), norm(xte), yte.long()


# ---------------------------------------------------------------- network

def image_path(c, hw, dt=False):
    """block.rs `image_path` (three-conv stack, padding 0, dropout 0.2):
    FC 256 then batch-norm (`dt`) or ReLU (CT/FM)."""
    s = ((hw - 2) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(c, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Dropout(0.2),
        nn.Conv2d(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Flatten(), nn.Linear(128 * s * s, 256),
        nn.BatchNorm1d(256) if dt else nn.ReLU())


class CtNet(nn.Module):
    """ct_net.rs: the shared network û_θ / v̂_θ(z_t, x, t), `m` logits."""

    def __init__(self, c, hw, m, d):
        super().__init__()
        self.dims = (c, hw, hw)
        self.proto = d == c * hw * hw
        self.img = image_path(c, hw)
        self.label = image_path(c, hw) if self.proto else nn.Sequential(nn.Linear(d, 256), nn.ReLU())
        self.time_fc = nn.Sequential(nn.Linear(TIME_EMBED_DIM, 256), nn.ReLU())
        self.fc1 = nn.Linear(768, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, m)
        h = TIME_EMBED_DIM // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(h, dtype=torch.float64) / h).float())

    def time_features(self, t):
        """t: [n] float32 → FC(sinusoidal(t)) [n, 256]."""
        a = t[:, None] * self.freqs[None, :]
        return self.time_fc(torch.cat([torch.sin(a), torch.cos(a)], 1))

    def label_features(self, z):
        return self.label(z.view(z.shape[0], *self.dims) if self.proto else z)

    def forward(self, x, z, t):
        """The full network (training): one time per row."""
        cat = torch.cat([self.img(x), self.label_features(z), self.time_features(t)], 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(cat)))))

    def prepare(self, x):
        """§ 17: P = f(x)·W1[:, 0:256]ᵀ, the image path run once."""
        return self.img(x) @ self.fc1.weight[:, :256].t()

    def forward_cached(self, proj, z, t):
        """Logits from the cached image projection: label path, time path on
        one row shared by the batch, fusion MLP."""
        w = self.fc1.weight
        ft = self.time_features(torch.full((1,), float(t), device=z.device))
        tb = torch.addmm(self.fc1.bias, ft, w[:, 512:].t())
        h1 = F.relu(torch.addmm(proj, self.label_features(z), w[:, 256:512].t()) + tb)
        return self.fc3(F.relu(self.fc2(h1)))


# ---------------------------------------------------------------- schedule

class LearnableSchedule(nn.Module):
    """learnable.rs: one f64 parameter [r1 (W), b1 (W), r2 (W), b2, γ0, γ1]."""
    WIDTH = 64

    def __init__(self, gamma0=-7.0, gamma1=7.0):
        super().__init__()
        w = self.WIDTH
        p = torch.zeros(3 * w + 3, dtype=torch.float64)
        p[:2 * w].uniform_(-1.0, 1.0)
        p[2 * w:3 * w].uniform_(-1.0 / 8, 1.0 / 8)
        p[3 * w + 1], p[3 * w + 2] = gamma0, gamma1
        self.params = nn.Parameter(p)

    def gammas(self):
        w = self.WIDTH
        return self.params[3 * w + 1], self.params[3 * w + 2]

    def _tilde(self, t):
        w, p = self.WIDTH, self.params
        w1 = F.softplus(p[:w], threshold=30.0)
        w2 = F.softplus(p[2 * w:3 * w], threshold=30.0)
        h = t[:, None] * w1 + p[w:2 * w]
        return F.softplus(h, threshold=30.0) @ w2 + p[3 * w], (torch.sigmoid(h) * w1) @ w2

    def at(self, t):
        """(ᾱ(t), γ′(t), SNR′(t)) for t: [n] f64 (Eqs. 65–67)."""
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64, device=t.device)
        g, gp = self._tilde(torch.cat([t, ends]))
        den = g[-1] - g[-2]
        gb, gbp = (g[:-2] - g[-2]) / den, gp[:-2] / den
        g0, g1 = self.gammas()
        gamma = g0 + (g1 - g0) * (1 - gb)
        gamma_p = -(g1 - g0) * gbp
        return torch.sigmoid(-gamma), gamma_p, -gamma_p * torch.exp(-gamma)


# ---------------------------------------------------------------- embeddings

def make_embedding(kind, m, xtr, ytr):
    """embedding.rs: W_Embed [m, d] and whether it is learned."""
    if kind == "one-hot":
        return torch.eye(m), False
    if kind.startswith("dim"):
        d = int(kind[3:].lstrip("="))
        w = torch.randn(m, d, dtype=torch.float64) / math.sqrt(d)
        if d >= m:  # Gram–Schmidt on the rows ("orthogonal when possible")
            for i in range(m):
                for j in range(i):
                    w[i] -= (w[i] @ w[j]) * w[j]
                w[i] /= w[i].norm()
        return w.float(), True
    if kind == "prototype":
        flat = xtr.reshape(len(xtr), -1)
        rows = []
        for c in range(m):
            members = (ytr == c).nonzero().flatten()
            if len(members) > 1000:
                members = members[torch.randperm(len(members))[:1000]].sort().values
            x = flat[members].double()
            g = x @ x.t()
            dg = g.diagonal()
            d2 = (dg[:, None] + dg[None, :] - 2 * g).clamp_min(0.0)
            k = len(members)
            if k > 1:
                d2.fill_diagonal_(float("inf"))
                med = d2.sort(1).values[:, (k - 1) // 2]
                best = int(med.argmin())
            else:
                best = 0
            rows.append(flat[members[best]])
        return torch.stack(rows).float(), True
    raise ValueError(f"unknown embedding {kind} (one-hot, dim20, prototype)")


# ---------------------------------------------------------------- model

class NoPropCont:
    """ct.rs + ct/{train,sample}.rs: network, classifier, W_Embed, schedule, one Adam."""

    def __init__(self, method, embedding, xtr, ytr, m=10, eta=1.0, lr=1e-3, wd=1e-3):
        c, hw = xtr.shape[1], xtr.shape[2]
        self.method, self.eta, self.m = method, eta, m
        w, learned = make_embedding(embedding, m, xtr, ytr)
        self.W = nn.Parameter(w) if learned else w
        self.learned = learned
        self.d = w.shape[1]
        self.net = CtNet(c, hw, m, self.d)
        self.cls = nn.Linear(self.d, m)
        self.schedule = LearnableSchedule() if method == "ct" else None
        self.anchor_ce = method == "fm" and learned
        params = list(self.net.parameters())
        if method == "ct" or self.anchor_ce:
            params += list(self.cls.parameters())
        if learned:
            params.append(self.W)
        if self.schedule is not None:
            params += list(self.schedule.parameters())
        self.opt = torch.optim.Adam(params, lr=lr, weight_decay=wd)

    def train_batch(self, x, y):
        """One mini-batch of Algorithm 2 (CT) / 3 (FM) and one Adam step;
        returns (total, l2, ce, kl)."""
        self.net.train()
        self.cls.train()
        l2, ce, kl = self.ct_loss(x, y) if self.method == "ct" else self.fm_loss(x, y)
        loss = l2 + ce + kl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        item = lambda v: v.item() if torch.is_tensor(v) else float(v)
        return loss.item(), l2.item(), item(ce), item(kl)

    def ct_loss(self, x, y):
        b = len(y)
        u = self.W[y]
        t = torch.rand(b, dtype=torch.float64)
        ab_all, _, snrp_all = self.schedule.at(torch.cat([t, torch.tensor([1.0, 0.0], dtype=torch.float64)]))
        ab, snrp, ab1, ab0 = ab_all[:b], snrp_all[:b], ab_all[b], ab_all[b + 1]
        eps_t, eps_1 = torch.randn_like(u), torch.randn_like(u)
        z_t = ab.sqrt().float()[:, None] * u + (1 - ab).sqrt().float()[:, None] * eps_t
        logits = self.net(x, z_t, t.float())
        u_hat = F.softmax(logits, 1) @ self.W
        sq = ((u_hat - u) ** 2).sum(1).double()
        l2 = (0.5 * self.eta * snrp * sq).mean()
        z1 = ab1.sqrt().float() * u + (1 - ab1).sqrt().float() * eps_1
        ce = F.cross_entropy(self.cls(z1), y)
        usq = (u * u).sum(1).double()
        d = self.d
        kl = (0.5 * (ab0 * usq - d * ab0 - d * torch.log(1 - ab0))).mean()
        return l2, ce, kl

    def fm_loss(self, x, y):
        b = len(y)
        u = self.W[y]
        t = torch.rand(b, dtype=torch.float64).float()
        z0 = torch.randn_like(u)
        z_t = t[:, None] * u + (1 - t)[:, None] * z0
        v = self.net(x, z_t, t) @ self.W
        l2 = ((v - (u - z0)) ** 2).sum() / b
        ce = 0.0
        if self.anchor_ce:
            ce = F.cross_entropy(self.cls(z_t + (1 - t)[:, None] * v), y)
        return l2, ce, 0.0

    @torch.no_grad()
    def sample(self, x, steps, sampler):
        """z_1 after `steps` steps from z_0 ~ N(0, I), the image path run once."""
        self.net.eval()
        W = self.W.detach()
        z = torch.randn(x.shape[0], self.d)
        proj = self.net.prepare(x)
        dt = 1.0 / steps
        if self.schedule is not None:
            grid = torch.arange(steps + 1, dtype=torch.float64) / steps
            ab, gp, _ = self.schedule.at(grid)
            ab, gp = ab.tolist(), gp.tolist()

        def f(zz, k):  # the ODE's right-hand side at t_k (note D (ii) / note E)
            logits = self.net.forward_cached(proj, zz, k * dt)
            if self.method == "fm":
                return logits @ W
            u_hat = F.softmax(logits, 1) @ W
            return (-0.5 * gp[k] * math.sqrt(ab[k])) * u_hat + (0.5 * gp[k] * ab[k]) * zz

        for k in range(steps):
            if sampler == "ancestral":
                u_hat = F.softmax(self.net.forward_cached(proj, z, k * dt), 1) @ W
                abs_, abt = ab[k], ab[k + 1]
                al = abs_ / abt
                a = math.sqrt(abt) * (1 - al) / (1 - abs_)
                bb = math.sqrt(al) * (1 - abt) / (1 - abs_)
                cc = (1 - abt) * (1 - al) / (1 - abs_)
                z = a * u_hat + bb * z + math.sqrt(max(cc, 0.0)) * torch.randn_like(z)
            elif sampler == "euler":
                z = z + dt * f(z, k)
            else:  # heun
                k1 = f(z, k)
                k2 = f(z + dt * k1, k + 1)
                z = z + 0.5 * dt * (k1 + k2)
        return z

    @torch.no_grad()
    def predict(self, x, steps, sampler):
        z = self.sample(x, steps, sampler)
        if self.method == "ct":
            self.cls.eval()
            return self.cls(z).argmax(1)
        W = self.W.detach()
        return (2 * z @ W.t() - (W * W).sum(1)[None, :]).argmax(1)

    def accuracy(self, x, y, steps, sampler):
        correct = sum((self.predict(x[i:i + EVAL_BATCH], steps, sampler) == y[i:i + EVAL_BATCH]).sum().item()
                      for i in range(0, len(y), EVAL_BATCH))
        return correct / max(len(y), 1)


def default_sampler(method, requested):
    s = requested or ("ancestral" if method == "ct" else "euler")
    if method == "fm" and s == "ancestral":
        raise SystemExit("noprop-fm integrates an ODE: --sampler euler or heun")
    return s


def train_epoch(model, xtr, ytr, batch):
    """One shuffled pass, the last partial batch kept; (seconds, mean loss)."""
    perm = torch.randperm(len(ytr))
    losses = []
    s = time.perf_counter()
    for i in range(0, len(ytr), batch):
        idx = perm[i:i + batch]
        total, _, _, _ = model.train_batch(xtr[idx], ytr[idx])
        if not math.isfinite(total):
            raise SystemExit(f"non-finite loss {total} at batch {i // batch + 1}")
        losses.append(total)
    return time.perf_counter() - s, sum(losses) / max(len(losses), 1)


def cmd_train(args):
    xtr, ytr, xte, yte = load_data(args)
    torch.manual_seed(args.seed)
    model = NoPropCont(args.method, args.embedding, xtr, ytr)
    sampler = default_sampler(args.method, args.sampler)
    eval_steps = args.eval_steps or min(args.steps, 100)
    base = {"bench": "cont_train", "impl": "pytorch", "method": f"noprop-{args.method}",
            "dataset": args.dataset, "embedding": args.embedding, "sampler": sampler,
            "threads": torch.get_num_threads(), "batch": args.batch,
            "train_images": len(ytr), "test_images": len(yte)}
    cumulative = 0.0
    for epoch in range(args.epochs):
        secs, loss = train_epoch(model, xtr, ytr, args.batch)
        cumulative += secs
        ev = time.perf_counter()
        acc = model.accuracy(xte, yte, eval_steps, sampler)
        rec = dict(base, epoch=epoch + 1, train_loss=loss, train_seconds=secs,
                   cumulative_train_seconds=cumulative, images_per_second=len(ytr) / secs,
                   eval_steps=eval_steps, test_accuracy=acc, eval_seconds=time.perf_counter() - ev)
        if model.schedule is not None:
            g0, g1 = model.schedule.gammas()
            rec.update(schedule_gamma0=g0.item(), schedule_gamma1=g1.item())
        print(json.dumps(rec), flush=True)
    ev = time.perf_counter()
    acc = model.accuracy(xte, yte, args.steps, sampler)
    print(json.dumps(dict(base, bench="cont_train_final", epochs=args.epochs, inference_steps=args.steps,
                          test_accuracy=acc, cumulative_train_seconds=cumulative,
                          inference_seconds=time.perf_counter() - ev)), flush=True)


def cmd_infer(args):
    xtr, ytr, xte, yte = load_data(args)
    torch.manual_seed(args.seed)
    model = NoPropCont(args.method, args.embedding, xtr, ytr)
    sampler = default_sampler(args.method, args.sampler)
    done = 0
    while done < args.train_batches:
        perm = torch.randperm(len(ytr))
        for i in range(0, len(ytr), args.batch):
            if done == args.train_batches:
                break
            idx = perm[i:i + args.batch]
            model.train_batch(xtr[idx], ytr[idx])
            done += 1
    s = time.perf_counter()
    acc = model.accuracy(xte, yte, args.steps, sampler)
    secs = time.perf_counter() - s
    print(json.dumps({"bench": "cont_infer", "impl": "pytorch", "method": f"noprop-{args.method}",
                      "dataset": args.dataset, "embedding": args.embedding, "sampler": sampler,
                      "steps": args.steps, "batch": EVAL_BATCH, "images": len(yte),
                      "train_batches": args.train_batches, "threads": torch.get_num_threads(),
                      "seconds": secs, "images_per_second": len(yte) / secs,
                      "test_accuracy": acc}), flush=True)


def add_data_args(p):
    p.add_argument("--dataset", choices=["fashion-mnist", "mnist-test-split"], default="mnist-test-split")
    p.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--mnist-test-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "datasets", "mnist-test"))
    p.add_argument("--limit-train", type=int, default=0, help="first K training images (0: all)")
    p.add_argument("--limit-test", type=int, default=0, help="first K test images (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=128)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("train", "infer"):
        q = sub.add_parser(name)
        add_data_args(q)
        q.add_argument("--method", choices=["ct", "fm"], required=True)
        q.add_argument("--embedding", default="one-hot", help="one-hot, dim20 (dimN), prototype")
        q.add_argument("--steps", type=int, default=1000, help="inference steps (final evaluation)")
        q.add_argument("--sampler", choices=["ancestral", "euler", "heun"],
                       help="default: ancestral for ct, euler for fm")
        if name == "train":
            q.add_argument("--epochs", type=int, default=1)
            q.add_argument("--eval-steps", type=int, default=0,
                           help="steps of the per-epoch evaluations (default min(steps, 100))")
        else:
            q.add_argument("--train-batches", type=int, default=0,
                           help="mini-batches to train before timing (0: fresh network)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {"train": cmd_train, "infer": cmd_infer}[args.what](args)


if __name__ == "__main__":
    main()
