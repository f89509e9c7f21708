"""The one table that maps the metric names logs use onto foreshock's canonical names.

Every reader passes raw names through :func:`canonical_name`, so ``loss`` from a Hugging Face
trainer state, ``trl`` from llm.c, ``train_loss`` from Lightning and ``Loss/train`` from a
TensorBoard tag all become ``train/loss``. Names the table does not know are kept as they are:
a metric is never dropped or invented because of its name.

    >>> canonical_name("eval_loss"), canonical_name("trl"), canonical_name("grad_norm_hidden")
    ('val/loss', 'train/loss', 'layer/hidden/grad_norm')
    >>> canonical_name("my_metric")
    'my_metric'

The mapping is idempotent: ``canonical_name(canonical_name(x)) == canonical_name(x)``.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["EPOCH_KEY", "STEP_KEYS", "WALL_TIME_KEYS", "canonical_name", "is_known_metric"]

# Columns or keys that hold the training step, in order of preference. ``epoch`` is used only
# when none of these is present (Keras' CSVLogger writes one row per epoch).
STEP_KEYS: tuple[str, ...] = ("step", "global_step", "_step", "iteration", "iter", "trainer/global_step")
EPOCH_KEY = "epoch"

# Columns or keys that hold the wall-clock time of a record, in seconds since the epoch.
WALL_TIME_KEYS: tuple[str, ...] = ("_timestamp", "timestamp", "wall_time", "walltime")

# Whole names, compared in lower case with spaces turned into underscores.
_EXACT: dict[str, str] = {
    # losses
    "loss": "train/loss",
    "trl": "train/loss",  # llm.c: train loss
    "lm_loss": "train/loss",  # Megatron
    "tel": "val/loss",  # llm.c: eval loss
    "acc": "train/acc",
    "accuracy": "train/acc",
    # optimizer
    "lr": "opt/lr",
    "learning_rate": "opt/lr",
    "learning-rate": "opt/lr",
    "lr_mult": "opt/lr_mult",  # multiplier of the base learning rate
    "grad_norm": "opt/grad_norm",
    "gradient_norm": "opt/grad_norm",
    "grad-norm": "opt/grad_norm",
    "gnorm": "opt/grad_norm",
    "norm": "opt/grad_norm",  # llm.c prints the global gradient norm as norm:
    "total_grad_norm": "opt/grad_norm",
    "global_grad_norm": "opt/grad_norm",
    "update_ratio": "opt/update_ratio",
    "update_norm_muon": "opt/muon/update_norm",
    "muon_applied_update_norm": "opt/muon/update_norm",
    "muon_max_abs_applied_update": "opt/muon/update_max_abs",
    # curvature and representation probes
    "sharpness": "probe/hessian/lambda_max",
    "lambda_max": "probe/hessian/lambda_max",
    "top_eigenvalue": "probe/hessian/lambda_max",
    "eigenvalues": "probe/hessian/eigenvalues",  # per-step lists; the columnar reader splits them
    "hessian_trace": "probe/hessian/trace",
    "effective_rank": "probe/rank/effective",
    # timing: text readers append the unit they saw (train_time:285ms -> train_time_ms)
    "train_time_ms": "time/train_ms",
    "step_avg_ms": "time/step_avg_ms",
    "time_ms": "time/iter_ms",
    "dt_ms": "time/iter_ms",
    "time_s": "time/iter_s",
    "_runtime": "time/runtime_s",  # Weights & Biases: seconds since the run started
    "mfu_pct": "perf/mfu_pct",
}

# Prefixes that name the data split a metric was measured on. Held-out data is all ``val``.
_SPLITS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "eval": "val",
    "evaluation": "val",
    "test": "val",
}

# What follows a split prefix; anything else is kept as written (val_bpb -> val/bpb).
_TAILS: dict[str, str] = {
    "loss": "loss",
    "acc": "acc",
    "accuracy": "acc",
    "loss_step": "loss",  # Lightning's on_step variant of a metric logged both ways
    "acc_step": "acc",
    "epoch_loss": "loss",  # Keras TensorBoard callback
    "epoch_accuracy": "acc",
}

# Per-layer statistics: <kind>_<layer> or <layer>_<kind> -> layer/<layer>/<kind>.
_LAYER_KINDS: dict[str, str] = {
    "grad_norm": "grad_norm",
    "gradient_norm": "grad_norm",
    "param_norm": "param_norm",
    "parameter_norm": "param_norm",
    "weight_norm": "param_norm",
    "update_ratio": "update_ratio",
    "update_norm": "update_norm",
}
_LAYER_ALIASES: dict[str, str] = {"auxiliary": "aux", "unembedding": "unembed"}

# Namespaces that are already canonical and must not be rewritten again.
_NAMESPACES = frozenset({"layer", "opt", "probe", "attn", "act", "out", "time", "perf"})

_KINDS = "|".join(sorted(_LAYER_KINDS, key=len, reverse=True))
_SPLIT_PREFIX = re.compile(r"^(?P<split>[a-z]+)[/_.](?P<tail>.+)$", re.IGNORECASE)
_SPLIT_SUFFIX = re.compile(r"^(?P<tail>[^/]+)/(?P<split>[a-z]+)$", re.IGNORECASE)
_KIND_FIRST = re.compile(rf"^(?P<kind>{_KINDS})[_/](?P<layer>.+)$", re.IGNORECASE)
_KIND_LAST = re.compile(rf"^(?P<layer>.+?)[_/](?P<kind>{_KINDS})$", re.IGNORECASE)
_LR_MONITOR = re.compile(r"^lr-[a-z]\w*$", re.IGNORECASE)  # Lightning LearningRateMonitor: lr-AdamW
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@lru_cache(maxsize=4096)
def canonical_name(raw: str) -> str:
    """The canonical name of a metric, or ``raw`` itself when the table does not know it.

    Parameters
    ----------
    raw : str
        A metric name as a log wrote it (``eval_loss``, ``trl``, ``Loss/train``, ``testLoss``).
    """
    name = raw.strip()
    mapped = _lookup(name.replace(" ", "_"))
    if mapped is not None:
        return mapped
    if _CAMEL.search(name):  # testLoss -> test_loss, only when that spelling is known
        mapped = _lookup(_CAMEL.sub("_", name))
        if mapped is not None:
            return mapped
    return name


def _lookup(name: str) -> str | None:
    """Table and rules; matching ignores case, unknown parts keep the case they were written in."""
    key = name.lower()
    if key in _EXACT:
        return _EXACT[key]
    if "/" in key and key.split("/", 1)[0] in _NAMESPACES:
        return name
    for rx in (_SPLIT_PREFIX, _SPLIT_SUFFIX):
        m = rx.match(name)
        if m and m["split"].lower() in _SPLITS:
            return _split_name(_SPLITS[m["split"].lower()], m["tail"])
    if _LR_MONITOR.match(name):
        return "opt/lr"
    m = _KIND_FIRST.match(name) or _KIND_LAST.match(name)
    if m:
        layer = m["layer"]
        return f"layer/{_LAYER_ALIASES.get(layer.lower(), layer)}/{_LAYER_KINDS[m['kind'].lower()]}"
    return None


def _split_name(split: str, tail: str) -> str:
    exact = _EXACT.get(tail.lower())
    # train/learning_rate and train/grad_norm (Hugging Face's TensorBoard tags) are optimizer state
    if split == "train" and exact is not None and exact.startswith("opt/"):
        return exact
    return f"{split}/{_TAILS.get(tail.lower(), tail)}"


_CORE = frozenset({"train/loss", "val/loss", "train/acc", "val/acc"})


def is_known_metric(raw: str) -> bool:
    """Whether ``raw`` names a metric foreshock knows (a loss, an accuracy, optimizer or layer
    state, a probe, timing), as opposed to a column that may just as well be a hyper-parameter.

    Readers keep a column that never changes as config (``modulus``, ``d_model``) unless it
    is a known metric (a constant learning rate is still the learning-rate series).
    """
    name = canonical_name(raw)
    return name in _CORE or ("/" in name and name.split("/", 1)[0] in _NAMESPACES)
