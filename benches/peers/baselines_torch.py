#!/usr/bin/env python3
"""PyTorch peers of noprop-rs's two back-propagation baselines of Table 1,
for side-by-side CPU timing and an accuracy-fidelity comparison.

* `--method backprop`: crates/baselines/src/backprop.rs and
  crates/train/src/methods/backprop.rs (Eqs. 17–19, docs/DECISIONS.md § 15).
  T = --steps (10) NoProp-DT blocks (crates/models/src/block.rs; the `Block`
  of noprop_dt_torch.py, imported: conv image path with batch-norm, residual
  label MLP, fusion head; for `--embedding prototype` the label path is z as
  an image through its own copy of the image path, as ours) chained from
  z_0 ~ N(0, I) by z_t = (1 − α_t)·z_{t−1} + α_t·û_t, û_t =
  softmax(block_t(x, z_{t−1}))·W_Embed, α_t = tanh(w_t), w_t = atanh(0.5);
  CE of a linear classifier on z_T; one AdamW (lr 1e-3, wd 1e-3) over every
  block, the w_t, the classifier and W_Embed (when learned), batch 128.
  Evaluation: blocks in eval mode (running batch-norm statistics), z_0 ~ N(0, I).
* `--method adjoint`: crates/baselines/src/adjoint.rs and
  crates/train/src/methods/adjoint.rs (docs/DECISIONS.md §§ 16–17). The
  NoProp-CT network (`CtNet` of noprop_cont_torch.py, imported) as the ODE
  function dz/dt = logits(z, x, t)·W_Embed with the fixed one-hot W_Embed,
  K = --steps (1000) Euler steps on t_k = k/K for training and inference, a
  linear classifier on z_K, CE; one AdamW (lr 1e-3, wd 1e-3) over the
  network and the classifier. The gradient is ours: the exact discrete
  adjoint a_k = a_{k+1} + h·(∂g/∂z)ᵀa_{k+1} with no stored trajectory, each
  z_k recovered by inverting the Euler step with the fixed-point iteration
  z ← z_{k+1} − h·g(z, t_k) started from z_{k+1} − h·g(z_{k+1}, t_{k+1})
  (tolerance 8ε_f32·(1 + ‖z_{k+1}‖_∞), stop when the residual stops
  shrinking or after 50 evaluations), the last evaluation's graph giving the
  vector–Jacobian products. The image path runs once per mini-batch in
  training mode (one dropout mask for the whole trajectory), its projection
  P = f(x)·W1_xᵀ is a leaf whose gradient sums over the steps, and that sum
  is back-propagated through the conv path once at the end; inference runs
  the image path once per image. Per-epoch evaluations use --eval-steps
  (default --steps, as ours).

Data, normalisation and splits as noprop_cont_torch.py (crates/datasets,
crates/train/src/data.rs); per-epoch evaluation in batches of 500.
Differences from ours that do not change the computation: random streams
(torch's generator instead of our Philox keys), the shuffling order, and
gradients by autograd instead of hand-written backward passes.

  python3 baselines_torch.py train --method backprop --dataset mnist-test-split --epochs 10
  python3 baselines_torch.py train --method adjoint --steps 1000 --limit-train 512

Prints one JSON object per line. Threads: torch.set_num_threads(--threads).
"""
import argparse
import copy
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from noprop_cont_torch import EVAL_BATCH, CtNet, add_data_args, load_data, make_embedding
from noprop_dt_torch import Block

MAX_FIXED_POINT_ITERS = 50


class ProtoBlock(Block):
    """A DT block whose label path (prototype embedding, d = C·H·W) is z as
    an image through its own, independently initialised copy of the image path."""

    def __init__(self, c, hw, m):
        super().__init__(c, hw, m, 1)
        del self.l1, self.l2
        self.label = copy.deepcopy(self.img)
        for mod in self.label.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
        self.dims = (c, hw, hw)

    def forward(self, x, z):
        return self.head(torch.cat([self.img(x), self.label(z.view(z.shape[0], *self.dims))], 1))


class Backprop:
    """backprop.rs: T DT blocks chained by Eq. 18, trained end to end."""

    def __init__(self, embedding, xtr, ytr, T=10, m=10, lr=1e-3, wd=1e-3):
        c, hw = xtr.shape[1], xtr.shape[2]
        w, learned = make_embedding(embedding, m, xtr, ytr)
        self.W = nn.Parameter(w) if learned else w
        self.d = w.shape[1]
        proto = self.d == c * hw * hw
        self.blocks = nn.ModuleList(ProtoBlock(c, hw, m) if proto else Block(c, hw, m, self.d)
                                    for _ in range(T))
        self.w = nn.Parameter(torch.full((T,), math.atanh(0.5)))
        self.cls = nn.Linear(self.d, m)
        params = list(self.blocks.parameters()) + [self.w] + list(self.cls.parameters())
        if learned:
            params.append(self.W)
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)

    def forward(self, x):
        z = torch.randn(x.shape[0], self.d)
        alpha = torch.tanh(self.w)
        for t, blk in enumerate(self.blocks):
            u_hat = F.softmax(blk(x, z), 1) @ self.W
            z = (1 - alpha[t]) * z + alpha[t] * u_hat
        return self.cls(z)

    def train_batch(self, x, y):
        self.blocks.train()
        ce = F.cross_entropy(self.forward(x), y)
        self.opt.zero_grad(set_to_none=True)
        ce.backward()
        self.opt.step()
        return ce.item()

    @torch.no_grad()
    def predict(self, x):
        self.blocks.eval()
        return self.forward(x).argmax(1)

    def note(self):
        a = torch.tanh(self.w).tolist()
        return {"alpha_1": a[0], "alpha_T": a[-1]}


class Adjoint:
    """adjoint.rs: a neural ODE on the CT network trained by the discrete adjoint."""

    def __init__(self, xtr, steps, eval_steps, m=10, lr=1e-3, wd=1e-3):
        c, hw = xtr.shape[1], xtr.shape[2]
        self.K, self.eval_steps, self.m = steps, eval_steps, m
        self.E = torch.eye(m)
        self.net = CtNet(c, hw, m, m)
        self.cls = nn.Linear(m, m)
        self.opt = torch.optim.AdamW(list(self.net.parameters()) + list(self.cls.parameters()),
                                     lr=lr, weight_decay=wd)
        self.evaluations = 0
        self.batches = 0

    def g(self, proj, z, t):
        """dz/dt = logits·W_Embed."""
        return self.net.forward_cached(proj, z, t) @ self.E

    def train_batch(self, x, y):
        K, h = self.K, 1.0 / self.K
        self.net.train()
        z0 = torch.randn(x.shape[0], self.m)
        proj = self.net.prepare(x)  # training mode: one dropout mask for the trajectory
        pd = proj.detach().requires_grad_()
        with torch.no_grad():  # forward: K Euler steps, nothing kept but the state
            z = z0
            for k in range(K):
                g_last = self.g(pd, z, k * h)
                z = z + h * g_last
        zk = z.requires_grad_()
        ce = F.cross_entropy(self.cls(zk), y)
        if not math.isfinite(ce.item()):
            raise SystemExit(f"non-finite loss {ce.item()}")
        self.opt.zero_grad(set_to_none=True)
        ce.backward()
        a = zk.grad
        z = zk.detach()
        tol_eps = 8.0 * torch.finfo(torch.float32).eps
        g_guess = g_last
        for k in reversed(range(K)):
            t = k * h
            z_next = z
            tol = tol_eps * (1.0 + z_next.abs().max().item())
            guess = z_next - h * g_guess
            prev, iters = math.inf, 0
            while True:
                zg = guess.detach().requires_grad_()
                gk = self.g(pd, zg, t)
                iters += 1
                with torch.no_grad():
                    nxt = z_next - h * gk
                    res = (nxt - guess).abs().max().item()
                if not (res > tol and res < prev and iters < MAX_FIXED_POINT_ITERS):
                    break
                prev, guess = res, nxt
            self.evaluations += iters
            # VJP at (z_k, t_k) with h·a_{k+1}: parameter gradients, ∂P and ∂z_k.
            gk.backward(h * a)
            a = a + zg.grad
            z, g_guess = zg.detach(), gk.detach()
        proj.backward(pd.grad)  # Σ_k ∂L/∂P through W1_x and the conv path, once
        self.opt.step()
        self.batches += 1
        return ce.item()

    @torch.no_grad()
    def predict(self, x):
        self.net.eval()
        h = 1.0 / self.eval_steps
        z = torch.randn(x.shape[0], self.m)
        proj = self.net.prepare(x)
        for k in range(self.eval_steps):
            z = z + h * self.g(proj, z, k * h)
        return self.cls(z).argmax(1)

    def note(self):
        per_step = self.evaluations / max(self.batches * self.K, 1)
        self.evaluations = self.batches = 0
        return {"train_steps": self.K, "eval_steps": self.eval_steps,
                "state_recovery_evaluations_per_step": per_step}


def accuracy(model, x, y):
    correct = sum((model.predict(x[i:i + EVAL_BATCH]) == y[i:i + EVAL_BATCH]).sum().item()
                  for i in range(0, len(y), EVAL_BATCH))
    return correct / max(len(y), 1)


def cmd_train(args):
    xtr, ytr, xte, yte = load_data(args)
    torch.manual_seed(args.seed)
    if args.method == "backprop":
        model = Backprop(args.embedding, xtr, ytr, T=args.steps or 10)
        embedding = args.embedding
    else:
        if args.embedding != "one-hot":
            raise SystemExit("the adjoint baseline is one-hot only (as ours)")
        steps = args.steps or 1000
        model = Adjoint(xtr, steps, args.eval_steps or steps)
        embedding = "one-hot"
    base = {"bench": "baseline_train", "impl": "pytorch", "method": args.method,
            "dataset": args.dataset, "embedding": embedding, "threads": torch.get_num_threads(),
            "batch": args.batch, "train_images": len(ytr), "test_images": len(yte)}
    cumulative = 0.0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(ytr))
        losses = []
        s = time.perf_counter()
        for i in range(0, len(ytr), args.batch):
            idx = perm[i:i + args.batch]
            losses.append(model.train_batch(xtr[idx], ytr[idx]))
        secs = time.perf_counter() - s
        cumulative += secs
        ev = time.perf_counter()
        acc = accuracy(model, xte, yte)
        print(json.dumps(dict(base, epoch=epoch + 1, train_loss=sum(losses) / len(losses),
                              train_seconds=secs, cumulative_train_seconds=cumulative,
                              images_per_second=len(ytr) / secs, test_accuracy=acc,
                              eval_seconds=time.perf_counter() - ev, **model.note())), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    q = sub.add_parser("train")
    add_data_args(q)
    q.add_argument("--method", choices=["backprop", "adjoint"], required=True)
    q.add_argument("--embedding", default="one-hot",
                   help="backprop: one-hot, dim20 (dimN), prototype; adjoint: one-hot")
    q.add_argument("--epochs", type=int, default=1)
    q.add_argument("--steps", type=int, default=0,
                   help="backprop: blocks T (default 10); adjoint: Euler steps (default 1000)")
    q.add_argument("--eval-steps", type=int, default=0,
                   help="adjoint: Euler steps of the per-epoch evaluations (default --steps)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {"train": cmd_train}[args.what](args)


if __name__ == "__main__":
    main()
