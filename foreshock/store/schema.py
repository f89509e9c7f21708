"""The SQLite store's schema, created and changed only through ordered migrations.

Each migration is a list of statements applied in one transaction together with its row in
``foreshock_migrations``, so a store is always at a whole version. Append new migrations at the
end; never edit one that has shipped.

Two choices the tables encode:

- ``points.value`` has no declared type. A ``REAL`` column would store ``-0.0`` as the integer 0
  (SQLite keeps integral reals as integers) and lose its sign; an untyped column keeps the
  IEEE double as written. SQLite stores NaN as NULL, and a point always has a value, so a NULL
  value *is* NaN; readers turn it back. +-Inf are stored as they are.
- ``points`` is ``WITHOUT ROWID`` keyed by ``(run, metric, step)``: one b-tree, no separate index,
  a run's series read back in step order by a range scan. Metric names are interned in ``metrics``.
- ``points`` alone declares no foreign keys (every other table does, with ``ON DELETE CASCADE``).
  Measured on 1M points: the two parent look-ups cost 25% more CPU per insert and make deleting
  a run's points 5x slower (0.85 s against 0.16 s), which a re-analysis (``save_run`` with
  ``replace``) pays in full. The store keeps the link itself: points are written only after the
  run is checked under the write lock, and a run's points are deleted with it.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3

from foreshock.errors import StoreError

__all__ = ["MIGRATIONS", "applied_versions", "migrate"]

MIGRATIONS: list[tuple[str, list[str]]] = [
    ("initial schema", [
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused, so "most recent" is max(id)
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'unknown'
                CHECK (status IN ('running', 'finished', 'crashed', 'unknown')),
            source TEXT NOT NULL DEFAULT 'live',
            format TEXT NOT NULL DEFAULT 'live'
        )""",
        "CREATE INDEX runs_by_name ON runs (name, source)",
        "CREATE TABLE metrics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        """CREATE TABLE points (
            run INTEGER NOT NULL,  -- no REFERENCES: see the module docstring
            metric INTEGER NOT NULL,
            step INTEGER NOT NULL,
            value,
            wall_time REAL,
            PRIMARY KEY (run, metric, step)
        ) WITHOUT ROWID""",
        """CREATE TABLE skipped (
            run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            line INTEGER,
            count INTEGER NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (run, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            detector TEXT NOT NULL,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
            step INTEGER NOT NULL,
            onset_step INTEGER NOT NULL,
            message TEXT NOT NULL,
            evidence TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX events_by_run ON events (run, id)",
        """CREATE TABLE forecasts (
            id INTEGER PRIMARY KEY,
            run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            at_step INTEGER NOT NULL,
            target_step INTEGER NOT NULL,
            value,
            lo,
            hi,
            law TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX forecasts_by_run ON forecasts (run, id)",
        """CREATE TABLE monitor_state (
            run INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
            state TEXT NOT NULL,
            saved_at TEXT NOT NULL
        )""",
    ]),
]

_LEDGER = """CREATE TABLE IF NOT EXISTS foreshock_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"""


def applied_versions(conn: sqlite3.Connection) -> set[int] | None:
    """Versions already applied; None for an empty database. Refuses a database that is not a store."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "foreshock_migrations" not in tables:
        if tables - {"sqlite_sequence"}:
            raise StoreError(f"got a SQLite database of something else: tables {sorted(tables)} and "
                             "no foreshock_migrations table")
        return None
    return {r[0] for r in conn.execute("SELECT version FROM foreshock_migrations")}


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Bring the database to the latest schema; returns the versions this call applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Safe when several processes
    open a new store at once: each migration re-checks the ledger under the write lock.
    """
    latest = len(MIGRATIONS)
    applied = applied_versions(conn)
    if applied is not None and max(applied, default=0) > latest:
        raise StoreError(f"got schema version {max(applied)}, written by a newer foreshock (this one "
                         f"knows versions up to {latest}); upgrade foreshock to open it")
    if applied is not None and applied >= set(range(1, latest + 1)):
        return []  # the common case: no write lock taken just to open a store
    done: list[int] = []
    for version, (name, statements) in enumerate(MIGRATIONS, start=1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = applied_versions(conn)  # again, under the write lock: another process may have migrated
            if now is None or version not in now:
                conn.execute(_LEDGER)
                for sql in statements:
                    conn.execute(sql)
                conn.execute("INSERT INTO foreshock_migrations VALUES (?, ?, ?)",
                             (version, name, _dt.datetime.now(_dt.timezone.utc).isoformat()))
                done.append(version)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return done
