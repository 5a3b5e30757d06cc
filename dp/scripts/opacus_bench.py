"""Opacus side of bench/src/benchmarks/dp-step.ts: the same models, batch and thread count, on CPU.

Prints one JSON object to stdout: {"torch": ..., "opacus": ..., "threads": N, "results": [...]},
one result per (model, mode) with median ms/step and examples/s. Modes: "nonprivate" (plain
backward + SGD step), "hooks" (Opacus' default per-sample gradients: instantiated through module
hooks, then clipped, summed and noised) and "ghost" (Opacus' fast gradient clipping, ghost norms
and a second backward pass). Run in .venv-bench: python dp/scripts/opacus_bench.py --threads 2.
"""

import argparse
import json
import math
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

warnings.filterwarnings("ignore")


class TanhCnn(nn.Module):
    """Papernot et al. 2020: the model of bench dp-step (TF 'same' for 28, k8, s2 is 3 px each side)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 8, stride=2, padding=3)
        self.conv2 = nn.Conv2d(16, 32, 4, stride=2)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.tanh(self.conv1(x)), 2, 1)
        x = F.max_pool2d(torch.tanh(self.conv2(x)), 2, 1)
        x = torch.tanh(self.fc1(x.flatten(1)))
        return self.fc2(x)


class LoraLinear(nn.Module):
    def __init__(self, d_in, d_out, rank, alpha):
        super().__init__()
        self.base = nn.Linear(d_in, d_out)
        self.base.requires_grad_(False)
        self.lora_a = nn.Linear(d_in, rank, bias=False)
        self.lora_b = nn.Linear(rank, d_out, bias=False)
        nn.init.zeros_(self.lora_b.weight)
        self.scale = alpha / rank

    def forward(self, x):
        return self.base(x) + self.scale * self.lora_b(self.lora_a(x))


class Block(nn.Module):
    def __init__(self, d, heads, ff, rank, alpha):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (LoraLinear(d, d, rank, alpha) for _ in range(4))
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        self.ff1.requires_grad_(False)
        self.ff2.requires_grad_(False)

    def forward(self, x):
        b, t, d = x.shape
        h = self.ln1(x)
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x)), approximate="tanh"))


class Encoder(nn.Module):
    """The LoRA transformer of bench dp-step: frozen embeddings and base, trainable LoRA, LNs, head."""

    def __init__(self, vocab, seq, d, heads, blocks, classes, rank, alpha):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.tok.requires_grad_(False)
        self.pos.requires_grad_(False)
        self.blocks = nn.ModuleList(Block(d, heads, 4 * d, rank, alpha) for _ in range(blocks))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x).mean(1))


def make(model_name):
    torch.manual_seed(0)
    if model_name == "cnn":
        return TanhCnn(), torch.randn(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
    m = Encoder(1000, 32, 64, 4, 2, 2, 8, 16)
    return m, torch.randint(0, 1000, (args.batch, 32)), torch.randint(0, 2, (args.batch,))


def bench(model_name, mode):
    model, x, y = make(model_name)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    criterion = nn.CrossEntropyLoss(reduction="sum")
    if mode != "nonprivate":
        from opacus import PrivacyEngine

        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=args.batch)
        engine = PrivacyEngine()
        common = dict(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            poisson_sampling=False,
            loss_reduction="sum",
            grad_sample_mode=mode,
        )
        if mode == "ghost":  # ghost clipping wraps the criterion to run its second backward pass
            model, optimizer, criterion, _ = engine.make_private(criterion=criterion, **common)
        else:
            model, optimizer, _ = engine.make_private(**common)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    ms = statistics.median(times)
    return {"model": model_name, "mode": mode, "ms_per_step": ms, "examples_per_s": args.batch / ms * 1000}


parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--warmup", type=int, default=2)
parser.add_argument("--models", default="cnn,transformer")
parser.add_argument("--modes", default="nonprivate,hooks,ghost")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)

import opacus  # noqa: E402

results = []
for model_name in args.models.split(","):
    for mode in args.modes.split(","):
        try:
            results.append(bench(model_name, mode))
        except Exception as e:  # a mode Opacus cannot run on this model: report, do not hide
            results.append({"model": model_name, "mode": mode, "error": f"{type(e).__name__}: {e}"})
        print(f"{model_name} {mode}: {results[-1]}", file=sys.stderr)
json.dump({"torch": torch.__version__, "opacus": opacus.__version__, "threads": args.threads, "results": results}, sys.stdout)
