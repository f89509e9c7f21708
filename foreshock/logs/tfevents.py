"""TensorBoard event files, or a directory of them (searched recursively).

Records are read with TensorBoard's own record reader (length, CRC-checked payload) and each
``Event`` is decoded here, so one undecodable record is skipped instead of ending the file.
A scalar is either a ``simple_value`` (PyTorch ``add_scalar``, TF1) or a one-element numeric
``tensor`` (TF2 ``tf.summary.scalar``, and what TensorBoard's data_compat migration produces);
both are read. Images, histograms and text are not metrics and are passed over.

Directory layout follows TensorBoard's conventions: a subdirectory named like a data split
(``train/``, ``validation/``) or one written by PyTorch's ``add_scalars`` (``loss_val/``) is a
second writer of the same run and prefixes tags that have no prefix of their own
(``validation`` + ``epoch_loss`` -> ``val/loss``). Several independent runs in one directory
are refused with their names, rather than silently merged.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from foreshock.errors import LogFormatError
from foreshock.logs._source import GZIP_MAGIC, read_bytes
from foreshock.logs.base import Reader, Records
from foreshock.logs.names import canonical_name
from foreshock.run import Run

__all__ = ["TensorBoardReader"]

_SPLIT_DIRS = frozenset({"train", "training", "val", "valid", "validation", "eval", "evaluation", "test"})
_EXPECTED = "scalar summaries (add_scalar, tf.summary.scalar) in TensorBoard event files"


def _event_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*tfevents*") if p.is_file())


def _is_tfrecord(head: bytes) -> bool:
    if len(head) < 12:
        return False
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    return masked_crc32c(head[:8]) == struct.unpack("<I", head[8:12])[0]


class TensorBoardReader(Reader):
    name = "tensorboard"
    description = "TensorBoard event files (events.out.tfevents.*) or a directory holding them"

    def sniff(self, head: bytes, path: Path) -> bool:
        if path.is_dir():
            return next(iter(p for p in path.rglob("*tfevents*") if p.is_file()), None) is not None
        return "tfevents" in path.name or _is_tfrecord(head)

    def read(self, path: Path) -> Run:
        files = _event_files(path) if path.is_dir() else [path]
        if not files:
            raise LogFormatError(path, None, "a directory holding TensorBoard event files "
                                 "(events.out.tfevents.*)", "a directory without any")
        writers = _writers(path, files) if path.is_dir() else [(path, None)]
        records = Records(path, self.name)
        for file, prefix in writers:
            _read_file(records, file, prefix, path.is_dir())
        return records.build(expected=_EXPECTED)


def _writers(root: Path, files: list[Path]) -> list[tuple[Path, str | None]]:
    """Each event file with the tag prefix its directory gives; refuses several runs."""
    dirs = {f.parent for f in files}
    runs: dict[Path, list[tuple[Path, str | None]]] = {}
    for f in files:
        d = f.parent
        if d != root and (d.name.lower() in _SPLIT_DIRS or d.parent in dirs):
            runs.setdefault(d.parent, []).append((f, d.name))
        else:
            runs.setdefault(d, []).append((f, None))
    if len(runs) > 1:
        names = ", ".join(str(r.relative_to(root)) or "." for r in sorted(runs))
        raise LogFormatError(root, None, "a TensorBoard directory holding one run",
                             f"{len(runs)} runs ({names}); read one of these directories")
    return next(iter(runs.values()))


def _tag_name(tag: str, prefix: str | None) -> str:
    if prefix is None:
        return canonical_name(tag)
    flat = tag.replace("/", "_")
    if prefix.startswith(flat + "_"):  # add_scalars("loss", {"train": ...}) writes loss/ into loss_train/
        return canonical_name(f"{tag}/{prefix[len(flat) + 1:]}")
    if "/" in tag:
        return canonical_name(tag)
    return canonical_name(f"{prefix}/{tag}")


def _read_file(records: Records, file: Path, prefix: str | None, in_dir: bool) -> None:
    from google.protobuf.message import DecodeError
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub import errors as tf_errors

    loaded = read_bytes(file)
    where = f" in {file.name}" if in_dir else ""
    with tempfile.TemporaryDirectory() as tmp:
        source = file
        with file.open("rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
        if compressed:  # the record reader wants the plain file
            source = Path(tmp) / file.name
            source.write_bytes(loaded.data)
        plugins: dict[str, str] = {}
        good = 0
        try:
            for good, raw in enumerate(RawEventFileLoader(str(source)).Load(), 1):
                try:
                    event = event_pb2.Event.FromString(raw)
                except DecodeError:
                    records.bad(good, f"an Event (record {good}{where})", "bytes that do not decode as one")
                    continue
                _add_event(records, event, prefix, plugins)
        except (tf_errors.OpError, OSError, ValueError, struct.error):
            pass  # the reader stops at a record it cannot read; it is counted below
    complete, partial = _frames(loaded.data)
    lost = complete + partial - good
    if lost > 0 or loaded.cut:
        records.bad(good + 1, f"a complete event record (record {good + 1}{where})",
                    "a truncated or corrupt record; read up to the last good one", count=max(lost, 1))


def _add_event(records: Records, event, prefix: str | None, plugins: dict[str, str]) -> None:
    from tensorboard.util import tensor_util

    if not event.HasField("summary"):
        return
    for value in event.summary.value:
        kind = value.WhichOneof("value")
        if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
            plugins[value.tag] = value.metadata.plugin_data.plugin_name
        if kind == "simple_value":
            number = float(value.simple_value)
        elif kind == "tensor" and plugins.get(value.tag, "scalars") == "scalars":
            try:
                array = tensor_util.make_ndarray(value.tensor)
            except (ValueError, TypeError, KeyError):
                continue
            if array.size != 1 or array.dtype.kind not in "fiu":
                continue
            number = float(array.reshape(-1)[0])
        else:
            continue
        records.add(int(event.step), _tag_name(value.tag, prefix), number, float(event.wall_time))


def _frames(data: bytes) -> tuple[int, int]:
    """Records whose bytes are all there, and 1 if a partial record follows them (else 0)."""
    offset = complete = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 12 + length + 4
        if end > len(data):
            return complete, 1
        offset, complete = end, complete + 1
    return complete, int(offset < len(data))
