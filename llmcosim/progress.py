"""Progress of long commands on stderr: a live ``rich`` bar on a terminal, one line otherwise.

The simulators and report builders take a plain callback ``progress(done, total)`` (``sim/``
and ``reports/`` import nothing from here); the CLI wraps the work in :class:`TaskProgress`
and passes it as that callback:

- stderr a terminal: a live bar (done/total, elapsed, ETA), erased at the end, then the
  summary line;
- stderr a file or pipe: no bar, only the summary line (e.g. "flightllm-u280 cycle: simulated
  65 programs in 12.3 s"), so logs keep how long the work took;
- ``enabled=False`` (``--json``): nothing at all.

Work that never calls back (a roofline run, done in milliseconds) prints nothing, so the CLI
can hand the callback to every simulator; ``opaque=True`` (one long step with no count, e.g.
Yosys) shows a spinner and the elapsed time from the start instead.

``sweep`` keeps its own bar (``sweeps/progress.py``: points/s, failures).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

__all__ = ["ProgressFn", "TaskProgress"]

ProgressFn = Callable[[int, int], None]  # (done, total); what the simulators call


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class TaskProgress:
    """A context manager and a ``(done, total)`` callback.

    ``label`` names the work ("flightllm-u280 cycle"), ``noun`` what is counted ("programs");
    ``verb`` starts the summary: "<label>: <verb> <done> <noun> in <s> s". The bar starts at
    the first call (at ``__enter__`` when ``opaque``); nothing is printed if it never starts.
    """

    def __init__(self, label: str, noun: str, *, enabled: bool = True, verb: str = "",
                 opaque: bool = False, stream: IO[str] | None = None):
        self.label, self.noun, self.verb, self.opaque = label, noun, verb, opaque
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.live = enabled and _is_terminal(self.stream)
        self.done, self.total = 0, 0
        self.started = False
        self.seconds = 0.0
        self._bar: Any = None
        self._start = 0.0

    def __enter__(self) -> TaskProgress:
        self._start = time.perf_counter()
        if self.opaque:
            self._begin(None)
        return self

    def _begin(self, total: int | None) -> None:
        self.started = True
        if self.live:
            self._bar = _rich_bar(self.stream, self.noun, known_total=total is not None)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=total)

    def __call__(self, done: int, total: int) -> None:
        if not self.started:
            self._begin(total)
        self.done, self.total = done, total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.seconds = time.perf_counter() - self._start
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
        if self.enabled and self.started and exc_type is None:
            print(self.summary(), file=self.stream, flush=True)

    def summary(self) -> str:
        """The final line, e.g. "hades cycle: simulated 3 programs in 1.2 s"."""
        if self.opaque:
            what = f"{self.verb} {self.noun}".strip()
        else:
            n = f"{self.done}" if self.done == self.total else f"{self.done}/{self.total}"
            what = " ".join(p for p in (self.verb, n, self.noun) if p)
        return f"{self.label}: {what} in {self.seconds:.1f} s"


def _rich_bar(stream: IO[str], noun: str, known_total: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [SpinnerColumn(), TextColumn("[bold]{task.description}")]
    if known_total:
        columns += [BarColumn(), MofNCompleteColumn(), TextColumn(noun), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn()]
    else:
        columns += [TextColumn(noun), TimeElapsedColumn()]
    # stdout lines go above the bar only when stdout is the same terminal; a redirected
    # stdout stays in its file
    return Progress(*columns, console=Console(file=stream), transient=True,
                    redirect_stdout=_is_terminal(sys.stdout), redirect_stderr=False)
