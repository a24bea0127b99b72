#!/usr/bin/env python3
"""PyTorch peer of noprop-rs's NoProp-DT, for side-by-side timing (its `Block`
and `alpha_bar` are also what dt_checkpoint_torch.py loads checkpoints into).

The same block (docs/DECISIONS.md, note G.1 and § 7: padding-0 convs,
dropout 0.2, batch-norm, the residual label MLP, the fusion head), the same
schedule (reverse cosine over T+1 latents, s = 0.008), the same Eq. 8 loss
(T·η/2·ΔSNR·‖û − u_y‖² summed over d, batch mean; CE on z_T ~ q(z_T|y)), one AdamW per block plus one for
the classifier, `--order batch` (each mini-batch once; for t = 1..T block t's
step then one classifier step).

  python3 noprop_dt_torch.py step            # one block step, 1x28x28 and 3x32x32
  python3 noprop_dt_torch.py epoch --epochs 1  # Fashion-MNIST epoch(s), test accuracy
  python3 noprop_dt_torch.py epoch --limit-train 20000  # on the first 20,000 training images

Prints one JSON object per line. Threads: torch.set_num_threads(--threads).
--device cuda runs on the GPU (data, model and noise on the device; the
timings synchronise it) and adds peak_device_memory_bytes
(torch.cuda.max_memory_reserved) to the epoch record.
"""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def alpha_bar(T, s=0.008):
    f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return [0.0] + [f((T + 1 - t) / (T + 1)) / f(0) for t in range(1, T + 1)]


class Block(nn.Module):
    def __init__(self, c, hw, m, d):
        super().__init__()
        s = ((hw - 2) // 2 - 4) // 2
        self.img = nn.Sequential(
            nn.Conv2d(c, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Dropout(0.2),
            nn.Conv2d(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
            nn.Flatten(), nn.Linear(128 * s * s, 256), nn.BatchNorm1d(256))
        self.l1 = nn.Sequential(nn.Linear(d, 256), nn.BatchNorm1d(256), nn.ReLU())
        self.l2 = nn.Sequential(nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(),
                                nn.Linear(256, 256), nn.BatchNorm1d(256))
        self.head = nn.Sequential(nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(),
                                  nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(),
                                  nn.Linear(128, m))

    def forward(self, x, z):
        h1 = self.l1(z)
        return self.head(torch.cat([self.img(x), h1 + self.l2(h1)], 1))


class DT:
    def __init__(self, c, hw, m, T=10, eta=0.1, device="cpu"):
        self.T, self.eta, self.m, self.device = T, eta, m, device
        self.ab = alpha_bar(T)
        self.W = torch.eye(m, device=device)
        self.blocks = [Block(c, hw, m, m).to(device) for _ in range(T)]
        self.opts = [torch.optim.AdamW(b.parameters(), lr=1e-3, weight_decay=1e-3) for b in self.blocks]
        self.cls = nn.Linear(m, m).to(device)
        self.copt = torch.optim.AdamW(self.cls.parameters(), lr=1e-3, weight_decay=1e-3)

    def snr(self, t):
        return self.ab[t] / (1 - self.ab[t])

    def block_step(self, t, x, y):
        u = self.W[y]
        ab = self.ab[t - 1]
        z = math.sqrt(ab) * u + math.sqrt(1 - ab) * torch.randn_like(u)
        blk, opt = self.blocks[t - 1], self.opts[t - 1]
        blk.train()
        u_hat = F.softmax(blk(x, z), 1) @ self.W
        w = self.T / 2 * self.eta * (self.snr(t) - self.snr(t - 1))
        loss = w * ((u_hat - u) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # shared step: CE on z_T ~ q(z_T|y) (KL = 0 since alpha_bar_0 = 0)
        abT = self.ab[self.T]
        zT = math.sqrt(abT) * u + math.sqrt(1 - abT) * torch.randn_like(u)
        ce = F.cross_entropy(self.cls(zT), y)
        self.copt.zero_grad(set_to_none=True)
        ce.backward()
        self.copt.step()
        return loss.item() + ce.item()

    @torch.no_grad()
    def predict(self, x):
        z = torch.randn(x.shape[0], self.m, device=self.device)
        for t in range(1, self.T + 1):
            abt, abp = self.ab[t], self.ab[t - 1]
            alp = abp / abt
            a = math.sqrt(abt) * (1 - alp) / (1 - abp)
            b = math.sqrt(alp) * (1 - abt) / (1 - abp)
            c = (1 - abt) * (1 - alp) / (1 - abp)
            self.blocks[t - 1].eval()
            u_hat = F.softmax(self.blocks[t - 1](x, z), 1) @ self.W
            z = a * u_hat + b * z + math.sqrt(c) * torch.randn_like(z)
        return self.cls(z).argmax(1)


def read_idx(path):
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(d, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    raise FileNotFoundError(f"{stem}[.gz] not in {d}")


def cmd_step(args):
    for (c, hw) in [(1, 28), (3, 32)]:
        torch.manual_seed(0)
        model = DT(c, hw, 10, device=args.device)
        x = torch.randn(args.batch, c, hw, hw, device=args.device)
        y = torch.randint(0, 10, (args.batch,), device=args.device)
        for _ in range(3):
            model.block_step(5, x, y)
        times = []
        for _ in range(args.reps):
            s = time.perf_counter()
            model.block_step(5, x, y)
            sync(args.device)
            times.append(time.perf_counter() - s)
        times.sort()
        med = times[len(times) // 2]
        print(json.dumps({"bench": "dt_block_step", "input": f"{c}x{hw}x{hw}", "impl": "pytorch",
                          "threads": torch.get_num_threads(), "batch": args.batch,
                          "seconds": med, "images_per_second": args.batch / med}), flush=True)


def cmd_epoch(args):
    d = args.data_dir
    xtr = read_idx(find(d, "train-images-idx3-ubyte")).astype(np.float32) / 255.0
    ytr = read_idx(find(d, "train-labels-idx1-ubyte")).astype(np.int64)
    xte = read_idx(find(d, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    yte = read_idx(find(d, "t10k-labels-idx1-ubyte")).astype(np.int64)
    if args.limit_train:
        xtr, ytr = xtr[:args.limit_train], ytr[:args.limit_train]
    mean, std = xtr.mean(), xtr.std()
    xtr = torch.from_numpy((xtr - mean) / std).unsqueeze(1)
    xte = torch.from_numpy((xte - mean) / std).unsqueeze(1)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    dev = args.device
    xtr, xte, ytr, yte = xtr.to(dev), xte.to(dev), ytr.to(dev), yte.to(dev)
    torch.manual_seed(0)
    model = DT(1, 28, 10, device=dev)
    total = 0.0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(ytr), device=dev)
        sync(dev)
        s = time.perf_counter()
        for i in range(0, len(ytr), args.batch):
            idx = perm[i:i + args.batch]
            for t in range(1, model.T + 1):
                model.block_step(t, xtr[idx], ytr[idx])
        sync(dev)
        secs = time.perf_counter() - s
        total += secs
        correct = sum((model.predict(xte[i:i + 500]) == yte[i:i + 500]).sum().item()
                      for i in range(0, len(yte), 500))
        rec = {"bench": "dt_epoch", "dataset": "fashion-mnist", "impl": "pytorch",
               "epoch": epoch + 1, "train_seconds": secs, "cumulative_train_seconds": total,
               "images_per_second": len(ytr) / secs, "test_accuracy": correct / len(yte),
               "threads": torch.get_num_threads(), "device": dev}
        if dev.startswith("cuda"):
            rec["peak_device_memory_bytes"] = torch.cuda.max_memory_reserved()
            rec["gpu"] = torch.cuda.get_device_name()
        print(json.dumps(rec), flush=True)


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["step", "epoch"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--limit-train", type=int, default=0, help="epoch: the first K training images (0: all)")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {"step": cmd_step, "epoch": cmd_epoch}[args.what](args)


if __name__ == "__main__":
    main()
