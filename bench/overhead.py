"""Step time of a small CPU training loop with and without ``foreshock.watch``, side by side in one run.

Every configuration trains its own copy of the model, from the same initial weights on the same
batches, and they take turns step by step, in rotating order: a burst of load on a shared machine
lands on all of them alike. After ``--warmup`` untimed steps, each block of ``--block`` steps (50:
one flush and one store transaction) gives a ratio, the configuration's mean step time over the
unwatched loop's mean step time on the same steps. The ratio reported is the median over
``--blocks`` blocks, with its range.

Configurations:

- ``off``: the bare loop, ``loss.backward(); optimizer.step(); optimizer.zero_grad()``;
- ``watch precursors=None``: ``foreshock.watch(model, optimizer, store=<temporary file>,
  precursors=None)``: loss, learning rate, gradient norms and update ratios only;
- ``watch``: ``foreshock.watch(model, optimizer, store=<temporary file>)`` with its default
  settings: every step measured, the precursors found in the model (attention logits and block
  activation statistics here: neither model's head is found as a vocabulary projection), a flush
  and one store transaction every 50 steps, ``mon.step(step, loss=loss)`` after each step;
- ``watch every precursor on``: the same with the head named, ``precursors={"output": <head>}``, so
  that output logits, attention logits (transformer) and activation statistics (transformer) are
  all measured, at every step;
- ``watch every=10``: gradients and updates measured at every tenth step only;
- ``watch store=None``: nothing written to disk.

Models: ``mlp`` (4 linear layers of width 512, batch 128, AdamW; no vocabulary head, attention or
blocks: no precursors) and ``transformer`` (a 2-block ``nn.TransformerEncoder``, width 128, 4 heads,
64 positions, batch 8, AdamW: ``out/*``, ``attn/blocks.layers.<i>/logit_max`` and
``act/blocks.layers.<i>/*``), and, when ``transformers`` is installed, ``llama`` (a Hugging Face
``LlamaForCausalLM``, 2 layers, width 128, 4 query and 2 key heads, rotary embeddings, SDPA, 64
positions, batch 8, AdamW: its attention logits are recomputed after the rotary embedding, and its
``lm_head`` is found). ``close()`` (one last flush) is outside the timed steps.

    .venv/bin/python bench/overhead.py                              # prints the table
    .venv/bin/python bench/overhead.py --out bench/results/overhead.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import foreshock

NOTES = """\
`watch precursors=None` measures no precursor, `watch` those found by default (on the transformer,
attention logits and activation statistics; neither head is found, as the transformer's
feed-forward layer is wider than its head and the MLP's head is narrow; on llama, all of them),
`watch every precursor on` adds the output logits; the MLP has no attention and no blocks. The last table times one
forward pass of the model with every precursor's hooks idle and measuring. Each precursor is a
handful of small operations (the attention logits of one sequence's sampled queries, a strided
sample of a block's rows, a chunked logsumexp); on a model this small, run on one CPU thread, they
are a visible part of the step, as their rows show; on a GPU they are queued kernels the host
never waits for.

On a CPU, the capture runs on the CPU that trains: the gradient norms read every gradient once,
and the update ratio copies the weights before the step, subtracts them after it and takes two more
norms, several passes over the parameters. On a model whose step is little more than a few matrix
products (the MLP) that is visible at every step. `every=10` measures gradients and updates at one
step in ten, so their cost per step is a tenth of the second table's; what is left of its ratio is
within the spread of this machine, which other processes share (see the load average above). The
store's transaction, once per 50 steps, does not show (`store=None` costs the same). On a GPU the
same work is a few fused kernels queued behind the step, and the host never waits for them; that
case is not measured here."""

CONFIGS: dict[str, dict | None] = {
    "off": None,
    "watch precursors=None": {"precursors": None},
    "watch": {},
    "watch every precursor on": {"precursors": "all"},  # the workload's head named: see Trainer
    "watch every=10": {"every": 10},
    "watch store=None": {"store": None},
}


class TinyTransformer(torch.nn.Module):
    def __init__(self, vocab: int = 256, width: int = 128, heads: int = 4, blocks: int = 2):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, width)
        layer = torch.nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.emb(x)))  # (batch, positions, vocab)


def mlp_workload() -> tuple[torch.nn.Module, Callable[[torch.nn.Module, int], torch.Tensor]]:
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.GELU(), torch.nn.Linear(512, 512), torch.nn.GELU(),
                                torch.nn.Linear(512, 512), torch.nn.GELU(), torch.nn.Linear(512, 10))
    g = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(8, 128, 64, generator=g), torch.randint(0, 10, (8, 128), generator=g)

    def loss(m: torch.nn.Module, step: int) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(m(xs[step % 8]), ys[step % 8])

    return model, loss


def transformer_workload() -> tuple[torch.nn.Module, Callable[[torch.nn.Module, int], torch.Tensor]]:
    model = TinyTransformer()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 256, (8, 8, 65), generator=g)

    def loss(m: torch.nn.Module, step: int) -> torch.Tensor:
        batch = tokens[step % 8]
        logits = m(batch[:, :-1])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))

    return model, loss


def llama_workload() -> tuple[torch.nn.Module, Callable[[torch.nn.Module, int], torch.Tensor]]:
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 256, (8, 8, 64), generator=g)

    def loss(m: torch.nn.Module, step: int) -> torch.Tensor:
        batch = tokens[step % 8]
        return m(batch, labels=batch).loss

    return model, loss


WORKLOADS = {"mlp": mlp_workload, "transformer": transformer_workload, "llama": llama_workload}
HEADS = {"mlp": "6", "transformer": "head", "llama": "lm_head"}  # the output projection of each workload


class Trainer:
    """One configuration's model, optimizer and (maybe) watch, trained a step at a time."""

    def __init__(self, workload: str, options: dict | None, db: Path):
        torch.manual_seed(0)  # every configuration starts from the same weights
        self.model, self.loss_fn = WORKLOADS[workload]()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.mon = None
        self.stats = None
        if options is not None:
            options = {"store": db, "run": workload, "console": False} | options
            if options.get("precursors") == "all":
                options["precursors"] = {"output": HEADS[workload]}
            self.mon = foreshock.watch(self.model, self.optimizer, **options)
            self.stats = self.mon.stats

    def step(self, step: int) -> float:
        """Seconds this training step took."""
        start = time.perf_counter()
        loss = self.loss_fn(self.model, step)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        if self.mon is not None:
            self.mon.step(step, loss=loss)
        return time.perf_counter() - start


def measure(workload: str, blocks: int, block: int, warmup: int, tmp: Path) -> dict[str, list[float]]:
    """Ratio of each configuration's mean step time to the unwatched one's, per block of steps.

    The configurations take turns step by step (in rotating order), so a burst of load on a shared
    machine lands on all of them alike; a block of ``block`` steps holds whole flushes.
    """
    trainers = {name: Trainer(workload, options, tmp / f"{workload}-{i}.db")
                for i, (name, options) in enumerate(CONFIGS.items())}
    names = list(trainers)
    times: dict[str, list[float]] = {n: [] for n in names}
    for step in range(warmup + blocks * block):
        shift = step % len(names)
        for name in names[shift:] + names[:shift]:
            took = trainers[name].step(step)
            if step >= warmup:
                times[name].append(took)
    for t in trainers.values():
        if t.mon is not None:
            t.mon.close()
    means = {n: [statistics.fmean(ts[i * block:(i + 1) * block]) for i in range(blocks)] for n, ts in times.items()}
    return {n: [m / b for m, b in zip(ms, means["off"], strict=True)] + [statistics.median(times[n])]
            for n, ms in means.items()}


def isolated_costs(workload: str, repeats: int = 60) -> dict[str, float]:
    """Milliseconds per call of each part of the capture, timed alone on one model's real gradients."""
    trainer = Trainer(workload, {"store": None, "precursors": "all"}, Path("unused"))
    stats, mon = trainer.stats, trainer.mon
    loss = trainer.loss_fn(trainer.model, 0)
    loss.backward()
    precursors = mon.precursors

    def forward(measuring: bool) -> Callable[[], object]:
        def call() -> object:
            precursors.active = measuring
            out = trainer.loss_fn(trainer.model, 0)
            precursors.take()
            return out
        return call

    parts = {
        "gradient norms": lambda: stats.before_step(update=False),
        "gradient norms + weight snapshot + update norms": lambda: (stats.before_step(update=True),
                                                                    stats.after_step()),
        "Watch.step (buffer write, no store)": lambda: mon.step(next(steps), loss=loss),
    }
    if precursors is not None and precursors.names:
        parts[f"forward pass, precursor hooks idle ({len(precursors.names)} precursors)"] = forward(False)
        parts["forward pass, precursor hooks measuring"] = forward(True)
    steps = iter(range(10**9))
    times: dict[str, list[float]] = {name: [] for name in parts}
    names = list(parts)
    for i in range(repeats):
        # interleaved in rotating order: a burst of load, or being timed right after another
        # part, lands on every part alike
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            parts[name]()
            times[name].append(time.perf_counter() - start)
    mon.close()
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def table(results: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| model | configuration | median step (ms) | step time / unwatched (median of blocks) | range |",
             "|---|---|---|---|---|"]
    for workload, per_config in results.items():
        for name, values in per_config.items():
            ratios, median_step = values[:-1], values[-1]
            lines.append(f"| {workload} | {name} | {1e3 * median_step:.2f} | {statistics.median(ratios):.3f} | "
                         f"{min(ratios):.3f} - {max(ratios):.3f} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores; Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op thread(s); {platform.system()} {platform.release()}")


def _available() -> list[str]:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return [w for w in WORKLOADS if w != "llama"]
    return list(WORKLOADS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(WORKLOADS), default=_available(),
                        help="default: all of them (llama when transformers is installed)")
    parser.add_argument("--blocks", type=int, default=7, help="blocks of steps (the ratio is their median)")
    parser.add_argument("--block", type=int, default=50, help="timed steps per block and configuration")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before them")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, help="write the report here (markdown) instead of only printing it")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="foreshock-overhead-") as tmp:
        results = {w: measure(w, args.blocks, args.block, args.warmup, Path(tmp)) for w in args.models}
        costs = {w: isolated_costs(w) for w in args.models}
    body = table(results) + "\n\nThe parts of the capture timed alone (median ms per call, 60 calls each, interleaved in rotating order, on the model's real gradients):\n\n"
    body += "| model | parameters | part | ms |\n|---|---|---|---|\n" + "\n".join(
        f"| {w} | {sum(p.numel() for p in WORKLOADS[w]()[0].parameters()):,} | {part} | {ms:.3f} |"
        for w, parts in costs.items() for part, ms in parts.items())
    print(body)
    if args.out is not None:
        command = "python bench/overhead.py " + " ".join(sys.argv[1:] if argv is None else argv)
        args.out.write_text(
            f"# Overhead of foreshock.watch on a CPU training loop\n\n"
            f"Produced by `{command.strip()}` (foreshock {foreshock.__version__}, "
            f"{time.perf_counter() - started:.0f} s) on {machine()}; 1-minute load average "
            f"{load:.1f} before and {os.getloadavg()[0]:.1f} after.\n\n"
            f"All configurations train side by side, taking turns step by step in rotating order, "
            f"{args.warmup} untimed steps then {args.blocks} blocks of {args.block} timed steps each; "
            f"per block, ratio = mean step time / mean unwatched step time over the same steps "
            f"(a block of 50 holds one flush and one store transaction).\n\n{body}\n\n{NOTES}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
