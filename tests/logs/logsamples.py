"""Shared helpers for the log reader tests: where the shared logs are, event-file writing, run comparison."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HAVE_DATA = DATA.is_dir()


def shared_files() -> list[Path]:
    """Every shared log: the converted ``*.csv.gz`` and every original in ``*/orig/``."""
    if not HAVE_DATA:
        return []
    return sorted(DATA.glob("*/*.csv.gz")) + sorted(p for p in DATA.glob("*/orig/*") if p.is_file())


def twin_of(orig: Path) -> Path | None:
    """The converted ``<run>.csv.gz`` of an original file, when there is one."""
    name = orig.name
    for suffix in (".trainer_state.json", ".json", ".csv", ".txt", ".log"):
        if name.endswith(suffix):
            twin = orig.parent.parent / (name[: -len(suffix)] + ".csv.gz")
            return twin if twin.exists() else None
    return None


def write_events(directory: Path, scalars: list[tuple[int, str, float]], *, tensor: bool = False,
                 extra_values=()) -> Path:
    """Write an event file of scalars (as ``simple_value``, or as scalar tensors with metadata)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    directory.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(directory))
    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    for step, tag, value in scalars:
        if tensor:
            v = summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(np.float32(value)),
                                          metadata=meta)
        else:
            v = summary_pb2.Summary.Value(tag=tag, simple_value=value)
        writer.add_event(event_pb2.Event(wall_time=1_700_000_000.0 + step, step=step,
                                         summary=summary_pb2.Summary(value=[v])))
    for step, value in extra_values:
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[value])))
    writer.close()
    (path,) = directory.glob("*tfevents*")
    return path


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal arrays, NaN equal to NaN."""
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))
