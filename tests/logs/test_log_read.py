import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

import foreshock
import foreshock.logs as logs
from foreshock.errors import LogFormatError
from foreshock.logs import Reader, list_formats, read_log, register_reader
from foreshock.run import RunBuilder


def test_formats_are_listed_in_sniffing_order_text_last():
    formats = list_formats()
    assert formats[-1] == "text"
    assert {"csv-long", "csv-wide", "jsonl", "hf-trainer-state", "tensorboard", "json-columns"} <= set(formats)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_log(tmp_path / "nope.csv")
    path = tmp_path / "a.csv"
    path.write_text("step,name,value\n0,loss,1\n")
    with pytest.raises(ValueError, match="unknown log format 'parquet'.*csv-long"):
        read_log(path, format="parquet")


@pytest.mark.parametrize(("content", "got"), [(b"", "an empty file"), (b"\x00\x01\x02binary\xff" * 10, "binary data")])
def test_files_that_are_not_logs(tmp_path, content, got):
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    with pytest.raises(LogFormatError, match=f"x.bin: expected a training log in one of the formats .*got '{got}'"):
        read_log(path)


def test_forcing_a_format_that_does_not_fit_names_the_problem(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("step,name,value\n0,loss,1\n")
    with pytest.raises(LogFormatError, match="a.csv"):
        read_log(path, format="jsonl")


def test_source_is_the_path_as_given_and_read_uses_read_log(tmp_path, monkeypatch):
    (tmp_path / "run.csv").write_text("step,name,value\n0,loss,1\n")
    monkeypatch.chdir(tmp_path)
    assert read_log("./run.csv").source == "./run.csv"
    assert foreshock.read(Path("run.csv")).names == ["train/loss"]


class _Upper(Reader):
    name = "upper"

    def sniff(self, head, path):
        return head.startswith(b"UPPER")

    def read(self, path):
        b = RunBuilder()
        for i, line in enumerate(path.read_text().split()[1:]):
            b.add(i, "train/loss", float(line))
        return b.build(path.stem, source=str(path), format=self.name)


def test_register_reader_and_entry_points(tmp_path, monkeypatch):
    path = tmp_path / "u.txt"
    path.write_text("UPPER 3 2 1")
    monkeypatch.setattr(logs, "_registered", [])
    monkeypatch.setattr(logs, "_plugins", None)

    class _EP:
        name, value = "upper", "tests:_Upper"

        def load(self):
            return _Upper

    class _Broken(_EP):
        name, value = "broken", "nowhere:Nothing"

        def load(self):
            raise ImportError("no module named nowhere")

    def entry_points(group):
        assert group == "foreshock.readers"
        return [_EP(), _Broken()]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with pytest.warns(UserWarning, match="cannot load log reader 'broken'"):
        assert "upper" in list_formats()
    assert read_log(path).format == "upper"
    monkeypatch.setattr(logs, "_plugins", [])
    register_reader(_Upper)
    assert list_formats()[0] == "upper" and read_log(path).series("train/loss")[1].tolist() == [3, 2, 1]


def test_errors_readers_raise_are_their_own_not_the_safety_net(tmp_path):
    # the catch-all in read_log keeps the promise "LogFormatError or nothing"; readers should not need it
    digits = b"9" * 5000  # longer than int() converts
    samples = [b"step,name,value\n", b"{", b"[", b"step,lr\n\n", b'{"step": 1}\n', b"step:" + digits + b" train_loss:1\n",
               b'{"loss": [' + digits + b"]}", bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8))]
    for i, content in enumerate(samples):
        path = tmp_path / f"f{i}"
        path.write_bytes(content)
        with pytest.raises(LogFormatError) as e:
            read_log(path)
        assert e.value.__cause__ is None, e.value
