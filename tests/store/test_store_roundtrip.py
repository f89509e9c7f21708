"""Runs, points, events, forecasts and monitor state go into a SQLite store file and come back exact."""

import math
import struct

import numpy as np
import pytest

from foreshock.errors import StoreError
from foreshock.events import Event
from foreshock.run import Run, RunBuilder, Series, Skipped
from foreshock.store import RunStore, SQLiteStore, open_store

EDGE = [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
        -1.7976931348623157e308, 1e-300, 0.1, 1 / 3, 2.0**53 + 2, -12345.678]


def bits(a):
    """The exact bit patterns of floats: NaN == NaN, and -0.0 != 0.0."""
    return [struct.pack("<d", x) if not math.isnan(x) else b"nan" for x in np.asarray(a, dtype=np.float64).tolist()]


def sample_run(name="gpt-small", source="/logs/gpt-small.csv"):
    b = RunBuilder()
    for i, v in enumerate(EDGE):
        b.add(10 * i, "train/loss", v, wall_time=1_700_000_000.25 + i if i % 3 else None)
    for step in range(0, 140, 20):
        b.add(step, "val/loss", 3.0 - step / 100)
    b.add_array("opt/lr", np.arange(0, 140, 7), np.linspace(6e-4, 6e-5, 20))
    b.skip(7, "expected a number in column 'value', got 'abc'")
    b.skip(8, "expected a number in column 'value', got 'abc'")
    b.skip(None, "truncated last line")
    return b.build(name, source=source, format="csv-long", status="crashed",
                   config={"lr": 6e-4, "schedule": {"kind": "cosine", "warmup": 700}, "tags": ["a", "b"]})


def assert_same_run(got: Run, want: Run):
    assert (got.name, got.source, got.format, got.status, got.created_at) == \
           (want.name, want.source, want.format, want.status, want.created_at)
    assert got.config == want.config
    assert got.skipped == want.skipped
    assert got.names == want.names
    for name in want.names:
        g, w = got[name], want[name]
        assert g.steps.dtype == np.int64 and g.values.dtype == np.float64
        assert g.steps.tolist() == w.steps.tolist()
        assert bits(g.values) == bits(w.values), name
        if w.wall_times is None:
            assert g.wall_times is None
        else:
            assert bits(g.wall_times) == bits(w.wall_times)


def test_a_run_round_trips_exactly_through_a_store_file(tmp_path):
    run = sample_run()
    path = tmp_path / "runs.db"
    with open_store(path) as store:
        rid = store.save_run(run)
        assert run.id == rid
    with open_store(path) as store:  # a fresh connection reads what was committed to the file
        got = store.load_run(rid)
    assert got.id == rid
    assert_same_run(got, run)
    assert got.skipped == [Skipped(7, 2, "expected a number in column 'value', got 'abc'"),
                           Skipped(None, 1, "truncated last line")]
    assert run["train/loss"].wall_times is not None and np.isnan(got["train/loss"].wall_times[0])


def test_edge_floats_survive_batches_too(tmp_path):
    # NaN is stored by SQLite as NULL and -0.0 by a REAL column as 0; both must come back as written
    with open_store(tmp_path / "s.db") as store:
        rid = store.create_run("live")
        store.append_points(rid, [(i, "train/loss", v, None) for i, v in enumerate(EDGE)])
        got = store.load_run(rid)
    assert bits(got["train/loss"].values) == bits(EDGE)
    assert got["train/loss"].wall_times is None
    assert got.status == "running" and got.source == "live"


def test_load_by_name_id_digits_or_latest(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        a = store.save_run(sample_run("a", "a.csv"))
        b = store.save_run(sample_run("b", "b.csv"))
        assert store.load_run().id == b
        assert store.load_run("a").id == a
        assert store.load_run(a).name == "a"
        assert store.load_run(str(a)).name == "a"  # the CLI passes ids as strings
        with pytest.raises(StoreError, match=r"no run named 'c'.*'b' \(id 2\), 'a' \(id 1\)"):
            store.load_run("c")
        with pytest.raises(StoreError, match="no run named or numbered 99"):
            store.load_run(99)


def test_empty_store_says_it_holds_no_runs(tmp_path):
    with open_store(tmp_path / "s.db") as store, pytest.raises(StoreError, match="holds none"):
        store.load_run()


def test_replace_keeps_one_copy_per_name_and_source(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        first = store.save_run(sample_run())
        store.add_events(first, [Event("spike", "spike", "warning", 10, 9, "old")])
        store.save_state(first, {"last_step": 10})
        store.add_forecast(first, at_step=10, target_step=100, value=1.0, lo=0.5, hi=1.5, law="power")
        other_source = store.save_run(sample_run(source="/elsewhere/gpt-small.csv"))
        again = sample_run()
        again.metrics["train/loss"] = Series(np.array([0, 1]), np.array([9.0, 8.0]))
        second = store.save_run(again)
        infos = store.runs()
        assert [i.id for i in infos] == [other_source, second]
        assert store.load_run(second)["train/loss"].values.tolist() == [9.0, 8.0]
        assert store.load_run("gpt-small").id == second  # the re-read run is the most recent
        # nothing of the replaced run is left behind
        n = store._conn.execute("SELECT (SELECT count(*) FROM points WHERE run = ?) + (SELECT count(*) "
                                "FROM events WHERE run = ?) + (SELECT count(*) FROM skipped WHERE run = ?) + "
                                "(SELECT count(*) FROM forecasts WHERE run = ?) + (SELECT count(*) FROM "
                                "monitor_state WHERE run = ?)", (first,) * 5).fetchone()[0]
        assert n == 0
        kept = store.save_run(sample_run(), replace=False)
        assert len(store.runs()) == 3 and store.load_run("gpt-small").id == kept


def test_append_points_batches_and_a_repeated_step_replaces(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        rid = store.create_run("live", config={"lr": 1e-3})
        assert store.append_points(rid, [(0, "train/loss", 2.0, 10.0), (0, "opt/lr", 1e-3, 10.0)]) == 2
        store.append_points(rid, ((s, "train/loss", 2.0 - s / 10, 10.0 + s) for s in range(1, 4)))
        store.append_points(rid, [(2, "train/loss", -1.0, 99.0)])  # a resumed run logs step 2 again
        run = store.load_run(rid)
        assert run["train/loss"].steps.tolist() == [0, 1, 2, 3]
        assert run["train/loss"].values.tolist() == [2.0, 1.9, -1.0, 1.7]
        assert run["train/loss"].wall_times.tolist() == [10.0, 11.0, 99.0, 13.0]
        assert run.names == ["opt/lr", "train/loss"] and run.config == {"lr": 1e-3}
        # names are interned once, not stored on every point
        assert store._conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == 2
        with pytest.raises(StoreError, match="no run with id 42"):
            store.append_points(42, [(0, "train/loss", 1.0, None)])


def test_a_failed_batch_leaves_nothing_of_itself_and_keeps_what_was_stored(tmp_path):
    def points():
        yield 10, "train/loss", 1.0, None
        yield 11, "brand/new", 1.0, None  # a name interned inside the failing transaction
        raise RuntimeError("the training loop died mid-batch")

    with open_store(tmp_path / "s.db") as store:
        rid = store.save_run(sample_run())
        before = store.load_run(rid)
        with pytest.raises(RuntimeError, match="mid-batch"):
            store.append_points(rid, points())
        bad = sample_run()
        bad.metrics["val/loss"] = Series(np.array([1, 2, 3]), np.array([1.0]))  # lengths disagree
        with pytest.raises(ValueError):
            store.save_run(bad)
        assert_same_run(store.load_run(rid), before)
        assert [i.id for i in store.runs()] == [rid]
        store.append_points(rid, [(999, "brand/new", 5.0, None)])  # the rolled-back name id is not reused
        assert store.load_run(rid)["brand/new"].values.tolist() == [5.0]


def test_events_round_trip_in_order_with_non_finite_evidence(tmp_path):
    evs = [Event("spike", "spike", "warning", 120, 118, "train/loss jumped 6 sd above its median",
                 {"metric": "train/loss", "z": 6.2, "threshold": 5.0, "window": [1.0, math.inf]}),
           Event("nan", "nan", "critical", 130, 130, "train/loss is NaN", {"metric": "train/loss", "value": math.nan}),
           Event("plateau", "plateau", "info", 125, 100, "flat", {"metric": "val/loss", "slope": np.float64(-1e-9)})]
    with open_store(tmp_path / "s.db") as store:
        rid = store.create_run("r")
        store.add_events(rid, evs)
        got = store.events(rid)
        assert [e.step for e in got] == [120, 130, 125]
        assert got[0] == evs[0]
        assert math.isnan(got[1].evidence["value"]) and got[1].severity == "critical"
        assert got[2].evidence["slope"] == -1e-9 and type(got[2].evidence["slope"]) is float
        info = store.runs()[0]
        assert (info.n_events, info.worst_severity) == (3, "critical")
        store.replace_events(rid, evs[2:])
        assert store.events(rid) == [Event("plateau", "plateau", "info", 125, 100, "flat",
                                           {"metric": "val/loss", "slope": -1e-9})]
        with pytest.raises(StoreError):  # the CHECK constraint refuses an unknown severity
            store.add_events(rid, [Event("x", "x", "fatal", 1, 1, "?")])  # type: ignore[arg-type]
        assert len(store.events(rid)) == 1


def test_forecasts_round_trip(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        rid = store.create_run("r")
        f1 = store.add_forecast(rid, at_step=1000, target_step=20000, value=2.91, lo=2.85, hi=2.97,
                                law="power", params={"a": 1.5, "alpha": 0.31, "c": 2.8})
        store.add_forecast(rid, at_step=2000, target_step=20000, value=math.nan, lo=-math.inf, hi=math.inf,
                           law="exp")
        got = store.forecasts(rid)
    assert [f.id for f in got][0] == f1
    assert (got[0].at_step, got[0].target_step, got[0].value, got[0].lo, got[0].hi, got[0].law) == \
           (1000, 20000, 2.91, 2.85, 2.97, "power")
    assert got[0].params == {"a": 1.5, "alpha": 0.31, "c": 2.8}
    assert math.isnan(got[1].value) and (got[1].lo, got[1].hi) == (-math.inf, math.inf) and got[1].params == {}


def test_monitor_state_is_one_row_per_run_replaced_on_save(tmp_path):
    path = tmp_path / "s.db"
    with open_store(path) as store:
        rid = store.create_run("r")
        assert store.load_state(rid) is None
        store.save_state(rid, {"last_step": 10, "detectors": {"spike": {"mean": math.nan, "n": 3}}})
        store.save_state(rid, {"last_step": 20, "detectors": {"spike": {"mean": 1.5, "best": -math.inf}}})
    with open_store(path) as store:
        assert store.load_state(rid) == {"last_step": 20, "detectors": {"spike": {"mean": 1.5, "best": -math.inf}}}
        assert store._conn.execute("SELECT count(*) FROM monitor_state").fetchone()[0] == 1


def test_runs_summarise_each_run_and_status_and_delete(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        empty = store.create_run("empty", config={"k": 1})
        rid = store.save_run(sample_run())
        store.set_status(empty, "finished")
        infos = {i.id: i for i in store.runs()}
        assert infos[empty].status == "finished" and infos[empty].n_points == 0
        assert infos[empty].first_step is None and infos[empty].metrics == () and infos[empty].config == {"k": 1}
        i = infos[rid]
        assert (i.name, i.source, i.format, i.status) == ("gpt-small", "/logs/gpt-small.csv", "csv-long", "crashed")
        assert i.n_points == len(EDGE) + 7 + 20 and (i.first_step, i.last_step) == (0, 133)  # opt/lr ends last
        assert i.metrics == ("opt/lr", "train/loss", "val/loss") and i.worst_severity is None
        with pytest.raises(ValueError, match="status must be one of"):
            store.set_status(rid, "exploded")  # type: ignore[arg-type]
        store.delete_run(rid)
        assert [i.id for i in store.runs()] == [empty]
        assert store._conn.execute("SELECT count(*) FROM points").fetchone()[0] == 0
        with pytest.raises(StoreError, match="no run with id"):
            store.delete_run(rid)


def test_atomic_groups_writes_into_one_transaction(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        with pytest.raises(KeyError), store.atomic():
            rid = store.create_run("r")
            store.append_points(rid, [(0, "train/loss", 1.0, None)])
            raise KeyError("abandon")
        assert store.runs() == []
        with store.atomic():  # a failed inner write rolls back to its savepoint; the outer goes on
            rid = store.create_run("r")

            def failing():
                yield 0, "inner/name", 1.0, None
                raise RuntimeError("inner write fails")

            with pytest.raises(RuntimeError):
                store.append_points(rid, failing())
            store.append_points(rid, [(1, "inner/name", 2.0, None)])  # interned again, not a stale id
        assert store.load_run(rid)["inner/name"].values.tolist() == [2.0]


def test_a_writer_waits_for_the_lock_only_as_long_as_its_timeout(tmp_path):
    path = tmp_path / "s.db"
    with open_store(path) as holder, SQLiteStore(path, timeout=0.2) as impatient:
        rid = holder.create_run("r")
        with holder.atomic():
            holder.append_points(rid, [(0, "train/loss", 1.0, None)])
            with pytest.raises(StoreError, match="locked"):
                impatient.append_points(rid, [(1, "train/loss", 2.0, None)])
            assert impatient.runs()[0].n_points == 0  # readers are not blocked, and see only commits
        assert impatient.load_run(rid)["train/loss"].values.tolist() == [1.0]


def test_memory_store_and_protocol():
    with SQLiteStore(":memory:") as store:
        assert isinstance(store, RunStore)
        rid = store.save_run(Run("m", {"train/loss": Series(np.array([1, 2]), np.array([0.5, 0.25]))}))
        assert store.load_run().id == rid
