"""What a store file is: telling it from logs, refusing what is not one, and its migrations."""

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import foreshock
from foreshock.errors import StoreError
from foreshock.run import Run, Series
from foreshock.store import SQLiteStore, is_store, open_store, schema

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_is_store_only_for_sqlite_files(tmp_path):
    db = tmp_path / "runs.db"
    open_store(db).close()
    csv = tmp_path / "run.csv"
    csv.write_text("step,name,value\n0,train_loss,2.5\n")
    other_db = tmp_path / "other.sqlite"
    sqlite3.connect(other_db).execute("CREATE TABLE t (x)").connection.close()
    assert is_store(db) and is_store(str(db))
    assert is_store(other_db)  # a SQLite file; open_store then says it is not a foreshock store
    assert not is_store(csv)
    assert not is_store(tmp_path)
    assert not is_store(tmp_path / "missing.db")
    assert not is_store(":memory:")


def test_is_store_on_a_real_log():
    logs = sorted(DATA.glob("*/*.csv.gz"))
    if not logs:
        pytest.skip(f"shared logs not found at {DATA}")
    assert not any(is_store(p) for p in logs)


def test_open_store_refuses_what_is_not_a_store(tmp_path):
    csv = tmp_path / "run.csv"
    csv.write_text("step,name,value\n0,train_loss,2.5\n")
    with pytest.raises(StoreError, match=r"run\.csv: expected a foreshock run store .*got a file starting with b'step"):
        open_store(csv)
    assert csv.read_text().startswith("step,name")  # untouched
    with pytest.raises(StoreError, match="got a directory"):
        open_store(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "no" / "such" / "dir" / "runs.db")

    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"other\.sqlite: expected a foreshock run store: got a SQLite database "
                                         r"of something else: tables \['users'\]"):
        open_store(other)
    conn = sqlite3.connect(other)  # and it was not changed: still its own journal mode, no new tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["users"]
    conn.close()


def test_new_store_settings(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_migrations_are_recorded_once_and_reopening_changes_nothing(tmp_path):
    path = tmp_path / "s.db"
    with open_store(path) as store:
        rid = store.save_run(Run("r", {"train/loss": Series(np.array([0]), np.array([1.0]))}))
        ledger = store._conn.execute("SELECT * FROM foreshock_migrations").fetchall()
        tables = store._conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    assert [(v, n) for v, n, _ in ledger] == [(i + 1, name) for i, (name, _) in enumerate(schema.MIGRATIONS)]
    for _ in range(2):
        with open_store(path) as store:
            assert store._conn.execute("SELECT * FROM foreshock_migrations").fetchall() == ledger
            assert store._conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == tables
            assert store.load_run(rid)["train/loss"].values.tolist() == [1.0]


def test_a_new_migration_is_applied_in_order_on_open(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    open_store(path).close()
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS,
                                               ("run notes", ["ALTER TABLE runs ADD COLUMN notes TEXT"])])
    with open_store(path) as store:
        versions = [r[0] for r in store._conn.execute("SELECT version FROM foreshock_migrations ORDER BY version")]
        assert versions == list(range(1, len(schema.MIGRATIONS) + 1))
        assert "notes" in [r[1] for r in store._conn.execute("PRAGMA table_info(runs)")]


def test_a_failing_migration_is_rolled_back_whole(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    open_store(path).close()
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, ("broken", [
        "CREATE TABLE half_done (x)", "ALTER TABLE no_such_table ADD COLUMN y"])])
    with pytest.raises(StoreError, match="no such table"):
        open_store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM foreshock_migrations").fetchone()[0] == len(schema.MIGRATIONS) - 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    conn.close()


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "s.db"
    with open_store(path) as store:
        store._conn.execute("INSERT INTO foreshock_migrations VALUES (99, 'future', 'x')")
    with pytest.raises(StoreError, match="schema version 99, written by a newer foreshock"):
        open_store(path)


def test_foreshock_read_takes_a_store(tmp_path):
    path = tmp_path / "runs.db"
    run = Run("r", {"train/loss": Series(np.array([0, 5]), np.array([2.0, np.nan]))}, source="x.csv", format="csv-long")
    with open_store(path) as store:
        rid = store.save_run(run)
    got = foreshock.read(path)
    assert got.id == rid and got.source == "x.csv" and got.format == "csv-long"
    assert np.isnan(got["train/loss"].values[1])
    with pytest.raises(StoreError, match="no run named 'nope'"):
        foreshock.read(path, run="nope")


def test_in_memory_store_needs_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SQLiteStore(":memory:") as store:
        store.create_run("r")
    assert list(tmp_path.iterdir()) == []
