"""A writer killed with SIGKILL mid-batch: every committed batch survives, nothing of the partial one shows."""

import multiprocessing as mp
import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from foreshock.store import open_store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

SMALL = 20_000  # points in each committed batch
LARGE = 800_000  # points in the batch that is in flight when the writer dies
STALL_AT = 600_000  # past the page cache (~300k points), so uncommitted pages reach the WAL file
COMMITTED = 4  # batches committed before the large one


def batch(b: int):
    """Batch b: steps following the previous batches, value == step, so any partial batch shows."""
    first = b * SMALL
    n = LARGE if b == COMMITTED else SMALL
    for k in range(first, first + n):
        yield k, "train/loss" if k % 2 else "opt/lr", float(k), None


def stall_halfway(points, conn):
    """Yield part of the points, tell the parent, then hang: the transaction holds a partial batch."""
    for i, p in enumerate(points):
        if i == STALL_AT:
            conn.send("stalled")
            time.sleep(600)
        yield p


def _writer(path: str, conn, stall: bool) -> None:
    with open_store(path) as store:
        rid = store.create_run("crash")
        b = 0
        while True:
            points = batch(b)
            if b == COMMITTED:
                conn.send("starting")
                if stall:
                    points = stall_halfway(points, conn)
            store.append_points(rid, points)
            conn.send(b)  # reported only once committed
            b += 1


@pytest.mark.parametrize("stall", [True, False], ids=["killed-while-stalled", "killed-after-a-delay"])
def test_sigkill_mid_batch_keeps_every_committed_batch_and_no_partial_one(tmp_path, stall):
    path = str(tmp_path / "runs.db")
    wal = Path(path + "-wal")
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_writer, args=(path, child, stall))
    proc.start()
    reported = []
    try:
        while True:
            assert parent.poll(60), "the writer stopped reporting"
            msg = parent.recv()
            if msg == "starting":
                wal_committed = wal.read_bytes()
                if not stall:
                    time.sleep(0.2)  # inside the large batch: writing it takes about 1 to 2 s
                    break
            elif msg == "stalled":
                # uncommitted pages of the partial batch have already spilled into the WAL file
                assert wal.read_bytes() != wal_committed
                break
            else:
                reported.append(msg)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    assert reported == list(range(COMMITTED))

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with open_store(path) as store:
        run = store.load_run("crash")
        n = len(run)
        # killed while stalled: exactly the reported batches. After a delay the large batch may have
        # committed just before the kill, but then it is there whole.
        assert n == COMMITTED * SMALL if stall else n in (COMMITTED * SMALL, COMMITTED * SMALL + LARGE)
        for name, parity in (("train/loss", 1), ("opt/lr", 0)):
            steps, values = run.series(name)
            assert steps.tolist() == list(range(parity, n, 2))
            assert np.array_equal(values, steps.astype(np.float64))
        assert run.status == "running"  # nobody said it finished
        store.append_points(run.id, [(n, "train/loss", 1.0, None)])  # and the store takes writes again
        assert len(store.load_run("crash")) == n + 1
