"""Hugging Face Trainer ``trainer_state.json``: the ``log_history`` list of log entries.

Training entries (``loss``, ``learning_rate``, ``grad_norm``) and evaluation entries
(``eval_loss``, ``eval_*``) become metrics. The one summary entry the Trainer appends when
training ends (``train_runtime``, ``train_loss`` averaged over the whole run, ``total_flos``)
is not a per-step value: it goes into ``config["train_summary"]``, so that the run-average
``train_loss`` is never mistaken for the loss at the last step. The other top-level fields
(``global_step``, ``max_steps``, ``train_batch_size``...) are the run's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from foreshock.errors import LogFormatError
from foreshock.logs._json import load_document
from foreshock.logs._source import read_bytes
from foreshock.logs.base import Reader, Records, step_of
from foreshock.logs.jsonl import number
from foreshock.logs.names import canonical_name
from foreshock.run import Run

__all__ = ["HfTrainerStateReader"]

_SUMMARY_KEYS = frozenset({"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos"})
_KEPT_AS_IS = frozenset({"epoch"})


def _is_summary(entry: dict[str, Any]) -> bool:
    return bool(_SUMMARY_KEYS & entry.keys()) or ("train_loss" in entry and "loss" not in entry)


def _metric_name(key: str) -> str:
    name = canonical_name(key)
    # a key the table does not know, in a training entry, is a training-side quantity
    if name == key and key not in _KEPT_AS_IS and "/" not in key:
        return f"train/{key}"
    return name


class HfTrainerStateReader(Reader):
    name = "hf-trainer-state"
    description = "Hugging Face Trainer trainer_state.json (log_history)"

    def sniff(self, head: bytes, path: Path) -> bool:
        return b'"log_history"' in head or path.name.lower().endswith("trainer_state.json")

    def read(self, path: Path) -> Run:
        state, cut_line = load_document(path, read_bytes(path))
        history = state.get("log_history") if isinstance(state, dict) else None
        if not isinstance(history, list):
            got = f"a JSON {type(state).__name__}" + (f" with keys {', '.join(list(state)[:8])}"
                                                      if isinstance(state, dict) else "")
            raise LogFormatError(path, None, "a trainer_state.json object with a 'log_history' list", got)
        records = Records(path, self.name)
        records.config.update({k: v for k, v in state.items() if k != "log_history"})
        for index, entry in enumerate(history, 1):
            # entries have no line of their own in a pretty-printed file: report their number
            if not isinstance(entry, dict):
                records.bad(index, "a log entry (a JSON object)", repr(entry))
                continue
            step = step_of(entry.get("step"))
            if step is None:
                records.bad(index, "an integer 'step' in the log entry", repr(entry.get("step")))
                continue
            if _is_summary(entry):
                records.config["train_summary"] = entry
                continue
            for key, value in entry.items():
                v = number(value)
                if key != "step" and v is not None:
                    records.add(step, _metric_name(key), v)
        if cut_line is not None:
            records.bad(cut_line, "the rest of the JSON document", "the end of the file (cut off here)")
        global_step, max_steps = step_of(state.get("global_step")), step_of(state.get("max_steps"))
        done = global_step is not None and max_steps is not None and 0 < max_steps <= global_step
        return records.build(expected="log entries with a step in 'log_history'",
                             status="finished" if done and cut_line is None else "unknown")
