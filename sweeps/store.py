"""The results database: one SQLite row per design point, written as points finish.

WAL journal and one transaction per batch of finished points: a crash or ``kill -9`` loses
at most the points in flight and never corrupts the file. Rows start as ``pending``;
``ok``/``failed``/``filtered`` rows are finished and skipped by ``--resume``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from models.errors import UserError
from sweeps.resources import RESOURCE_METRICS
from sweeps.serving import SERVING_METRICS
from sweeps.spec import INPUTS, Point

__all__ = ["FINISHED", "Store"]

FINISHED = ("ok", "failed", "filtered")
_INPUT_COLS = {"hw": "TEXT", "model": "TEXT", "prefill": "INTEGER", "decode": "INTEGER",
               "batch": "INTEGER", "dtype": "TEXT", "weight_bits": "INTEGER",
               "kv_bits": "INTEGER", "fidelity": "TEXT", "gamma": "INTEGER", "alpha": "TEXT",
               "tree": "TEXT", "draft": "TEXT", "adaptive": "INTEGER", "sparsity": "TEXT",
               "keep": "REAL",
               "rate": "REAL", "requests": "TEXT", "num_requests": "INTEGER",
               "requests_seed": "INTEGER", "slo": "TEXT", "token_budget": "INTEGER"}
_OUTPUT_COLS = {"kind": "TEXT", "prefill_ms": "REAL", "decode_ms_per_token": "REAL",
                "decode_tokens_per_s": "REAL", "total_ms": "REAL", "energy_j": "REAL",
                "tokens_per_j": "REAL", "fits_memory": "INTEGER", "memory_bytes": "REAL",
                "peak_ops_per_s": "REAL", "mem_bytes_per_s": "REAL", "price_usd": "REAL",
                "mean_accepted": "REAL", "tokens_per_pass": "REAL", "speedup": "REAL",
                "baseline_tokens_per_s": "REAL", "draft_target_cost_ratio": "REAL",
                **{k: "REAL" for k in SERVING_METRICS},
                **{k: "REAL" for k in RESOURCE_METRICS},
                "result": "TEXT", "wall_s": "REAL", "cached": "INTEGER",
                "code_version": "TEXT", "finished_at": "REAL"}
assert set(_INPUT_COLS) == set(INPUTS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS points (
    hash TEXT PRIMARY KEY, idx INTEGER NOT NULL, status TEXT NOT NULL, error TEXT,
    {', '.join(f'{k} {t}' for k, t in _INPUT_COLS.items())}, overrides TEXT NOT NULL,
    {', '.join(f'{k} {t}' for k, t in _OUTPUT_COLS.items())}
);
CREATE INDEX IF NOT EXISTS points_status ON points(status);
"""


class Store:
    """A sweep's SQLite file; one writer (the driver process), any number of readers."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                raise UserError(f"results database {str(self.path)!r} does not exist")
            if self.path.is_dir():
                raise UserError(f"results database {str(self.path)!r} is a directory, "
                                "not a .db file")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            self._check_schema()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: process crashes are safe
                self.db.executescript(_SCHEMA)
            except sqlite3.DatabaseError as e:  # --db names some other file
                self.db.close()
                raise UserError(f"results database {str(self.path)!r} is not an SQLite "
                                f"file: {e}") from None
            self._add_missing_columns()
        self.db.row_factory = sqlite3.Row

    def _check_schema(self) -> None:
        """UserError unless the file is a results database (any other file: one line)."""
        what = (f"{str(self.path)!r} is not a sweep results database (an SQLite file with "
                "tables 'meta' and 'points', written by `llmcosim sweep SPEC.toml`)")
        try:
            tables = {r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:  # not SQLite at all, or a directory
            self.db.close()
            raise UserError(f"{what}: {e}") from None
        if not {"meta", "points"} <= tables:
            self.db.close()
            raise UserError(what + (": it is empty" if not tables else
                                    f": it has tables {', '.join(sorted(tables))}"))

    def _add_missing_columns(self) -> None:
        """A DB written by an older llmcosim gets the columns added since (NULL there)."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(points)")}
        for k, t in {**_INPUT_COLS, **_OUTPUT_COLS}.items():
            if k not in have:
                self.db.execute(f"ALTER TABLE points ADD COLUMN {k} {t}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta ------------------------------------------------------------------------------
    def set_meta(self, **items: Any) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in items.items()])

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    # -- points ----------------------------------------------------------------------------
    def add_points(self, points: Iterable[Point]) -> None:
        """Register points as pending (existing rows, finished or not, are kept)."""
        start = self.db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM points").fetchone()[0]
        rows = [(p.key, start + i, "pending", *(p.inputs()[k] for k in _INPUT_COLS),
                 json.dumps(dict(p.overrides))) for i, p in enumerate(points)]
        cols = ["hash", "idx", "status", *_INPUT_COLS, "overrides"]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(f"INSERT OR IGNORE INTO points ({', '.join(cols)}) "
                                f"VALUES ({', '.join('?' * len(cols))})", rows)

    def finished(self) -> set[str]:
        q = f"SELECT hash FROM points WHERE status IN ({', '.join('?' * len(FINISHED))})"
        return {r[0] for r in self.db.execute(q, FINISHED)}

    def record(self, rows: Iterable[dict[str, Any]]) -> int:
        """Write finished points in one transaction; returns how many."""
        now = time.time()
        n = 0
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for row in rows:
                row = {**row, "finished_at": now}
                keys = [k for k in row if k != "hash"]
                self.db.execute(f"UPDATE points SET {', '.join(f'{k} = ?' for k in keys)} "
                                "WHERE hash = ?", [row[k] for k in keys] + [row["hash"]])
                n += 1
        return n

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM points GROUP BY status"))

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM points" + (" WHERE status = ?" if status else "") + " ORDER BY idx"
        return [dict(r) for r in self.db.execute(q, (status,) if status else ())]
