"""A ``rich`` progress bar for sweeps: done/total, points per second, ETA, failures."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["SweepProgress"]


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} pt/s" if speed else "- pt/s", style="progress.data.speed")


class SweepProgress:
    def __init__(self, name: str, total: int, enabled: bool = True):
        self.enabled = enabled
        self.failed = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[failed]} failed"),
            console=Console(file=sys.stderr), disable=not enabled, transient=False)
        self.task = self.progress.add_task(name, total=total, failed=0)

    def __enter__(self) -> SweepProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def advance(self, rows: list[dict[str, Any]]) -> None:
        self.failed += sum(r["status"] != "ok" for r in rows)
        self.progress.update(self.task, advance=len(rows), failed=self.failed)

    def note(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(text)
