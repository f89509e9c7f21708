"""Several processes write to one store file at once: every point lands exactly once."""

import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np

from foreshock.store import open_store

WRITERS = 8
POINTS = 10_000  # per writer
BATCH = 250
SHARED_EVERY = 5  # every 5th batch goes to the shared run


def expected(worker: int) -> tuple[list[tuple], list[tuple]]:
    """The (step, name, value, wall_time) points a writer sends to its own run and to the shared run."""
    own, shared = [], []
    for b in range(POINTS // BATCH):
        target = shared if b % SHARED_EVERY == 0 else own
        for k in range(b * BATCH, (b + 1) * BATCH):
            # every writer interns "train/loss" (the same new name, concurrently) and one of its own
            name = "train/loss" if k % 2 else f"w{worker}/aux"
            # in the shared run the writers' steps must not collide: a repeated step replaces
            step = k + worker * POINTS if target is shared else k
            # integers as floats: the checksum over all points is exact
            target.append((step, name, float(worker * 1_000_000 + k), float(k) if k % 3 else None))
    return own, shared


def _writer(path: str, worker: int, shared_id: int, start) -> None:
    own, shared = expected(worker)
    with open_store(path) as store:
        rid = store.create_run(f"writer-{worker}")
        start.wait()  # all writers begin their batches together
        queues = {rid: own, shared_id: shared}
        for b in range(POINTS // BATCH):
            target = shared_id if b % SHARED_EVERY == 0 else rid
            store.append_points(target, queues[target][:BATCH])
            del queues[target][:BATCH]
        store.set_status(rid, "finished")


def test_eight_processes_write_one_store_at_once(tmp_path):
    path = str(tmp_path / "runs.db")
    with open_store(path) as store:
        shared_id = store.create_run("shared")
    # the parent holds no connection now, so forked writers inherit no SQLite state; fork spares
    # each writer re-importing numpy (spawn where fork does not exist)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    start = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(path, w, shared_id, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WRITERS

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with open_store(path) as store:
        infos = {i.name: i for i in store.runs()}
        assert sorted(infos) == sorted(["shared", *(f"writer-{w}" for w in range(WRITERS))])
        want_shared: list[tuple] = []
        for w in range(WRITERS):
            own, shared = expected(w)
            want_shared += shared
            info = infos[f"writer-{w}"]
            assert info.status == "finished" and info.n_points == len(own)
            assert _points(store.load_run(info.id)) == sorted(own, key=lambda p: (p[1], p[0]))
        got_shared = _points(store.load_run(shared_id))
        assert len(got_shared) == len(want_shared) == WRITERS * POINTS // SHARED_EVERY
        assert got_shared == sorted(want_shared, key=lambda p: (p[1], p[0]))
        total = store._conn.execute("SELECT count(*), sum(value) FROM points").fetchone()
        assert total == (WRITERS * POINTS, float(sum(w * 1_000_000 * POINTS + POINTS * (POINTS - 1) // 2
                                                      for w in range(WRITERS))))
        names = [r[0] for r in store._conn.execute("SELECT name FROM metrics ORDER BY name")]
        assert names == ["train/loss", *sorted(f"w{w}/aux" for w in range(WRITERS))]


def _points(run) -> list[tuple]:
    out = []
    for name in run.names:
        s = run[name]
        walls = s.wall_times if s.wall_times is not None else np.full(len(s), np.nan)
        out += [(int(k), name, float(v), None if np.isnan(t) else float(t))
                for k, v, t in zip(s.steps, s.values, walls, strict=True)]
    return out


def _opener(path: str, worker: int, start) -> None:
    start.wait()
    with open_store(path) as store:
        store.append_points(store.create_run(f"opener-{worker}"), [(0, "train/loss", float(worker), None)])


def test_processes_creating_the_same_new_store_at_once(tmp_path):
    path = str(tmp_path / "new.db")
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    for _ in range(3):  # a race: try it a few times
        start = ctx.Barrier(WRITERS)
        procs = [ctx.Process(target=_opener, args=(path, w, start)) for w in range(WRITERS)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert [p.exitcode for p in procs] == [0] * WRITERS
        with open_store(path) as store:
            assert store._conn.execute("SELECT count(*) FROM foreshock_migrations").fetchone()[0] == 1
            assert sorted(i.name for i in store.runs()) == sorted(f"opener-{w}" for w in range(WRITERS))
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
