"""Chrome/Perfetto trace-event JSON writer, for any simulator.

Open the file at https://ui.perfetto.dev or chrome://tracing. Each unit is a thread (``tid``)
of one process (``pid``); spans are complete events (``ph: "X"``) in microseconds.
Format: https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["TraceWriter"]


class TraceWriter:
    """Collects spans and counters; :meth:`write` emits ``{"traceEvents": [...]}``."""

    def __init__(self, process: str = "llmcosim", max_events: int = 200_000) -> None:
        self.process = process
        self.max_events = max_events
        self.events: list[dict[str, Any]] = []
        self._tids: dict[str, int] = {}
        self.dropped = 0

    def _tid(self, unit: str) -> int:
        if unit not in self._tids:
            self._tids[unit] = len(self._tids) + 1
        return self._tids[unit]

    def _add(self, ev: dict[str, Any]) -> None:
        if len(self.events) >= self.max_events:
            self.dropped += 1
            return
        self.events.append(ev)

    def span(self, unit: str, name: str, start_s: float, dur_s: float,
             **args: Any) -> None:
        """A complete event on ``unit``'s track from ``start_s`` for ``dur_s`` seconds."""
        self._add({"name": name, "ph": "X", "pid": 1, "tid": self._tid(unit),
                   "ts": start_s * 1e6, "dur": max(dur_s, 0.0) * 1e6, "args": args})

    def counter(self, name: str, t_s: float, **values: float) -> None:
        self._add({"name": name, "ph": "C", "pid": 1, "ts": t_s * 1e6, "args": values})

    def to_dict(self) -> dict[str, Any]:
        meta = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": self.process}}]
        meta += [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": u}}
                 for u, tid in self._tids.items()]
        return {"traceEvents": meta + self.events, "displayTimeUnit": "ms",
                "otherData": {"dropped_events": self.dropped}}

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), separators=(",", ":")))
        return p
