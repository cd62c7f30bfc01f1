"""Where points run: a local process pool (default) or Ray tasks; same chunks, same results.

A backend takes chunks of points and yields each chunk's rows as it finishes, keeping a
bounded number of chunks in flight (so an interrupted sweep loses at most those). ``stop``
cancels what has not started; workers ignore SIGINT so Ctrl-C reaches only the driver.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from sweeps.spec import Point
from sweeps.worker import evaluate_chunk

__all__ = ["LocalBackend", "RayBackend", "make_backend"]

Rows = list[dict[str, Any]]


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C


class _Bounded:
    """Keeps at most 4 chunks per worker in flight; subclasses submit and collect."""

    workers: int
    inflight: Any

    def _submit(self, chunk: list[Point], cache_dir: str | None,
                version: str | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finished(self) -> Iterator[Rows]:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, chunks: list[list[Point]], cache_dir: str | None,
            version: str | None = None) -> Iterator[Rows]:
        todo = iter(chunks)
        limit = 4 * self.workers
        while True:
            while len(self.inflight) < limit:
                chunk = next(todo, None)
                if chunk is None:
                    break
                self._submit(chunk, cache_dir, version)
            if not self.inflight:
                return
            yield from self._finished()


class LocalBackend(_Bounded):
    """``workers`` forked processes (``concurrent.futures``)."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
        self.inflight: set[Future[Rows]] = set()

    def _submit(self, chunk: list[Point], cache_dir: str | None, version: str | None) -> None:
        self.inflight.add(self.pool.submit(evaluate_chunk, chunk, cache_dir, version))

    def _finished(self) -> Iterator[Rows]:
        done, self.inflight = wait(self.inflight, return_when=FIRST_COMPLETED)
        for f in done:
            yield f.result()

    def drain(self) -> Iterator[Rows]:
        """Rows of the chunks already running (after ``stop``)."""
        for f in list(self.inflight):
            if not f.cancelled():
                with contextlib.suppress(Exception):  # a dying pool must not hide other rows
                    yield f.result()
        self.inflight = set()

    def stop(self) -> None:
        for f in self.inflight:
            f.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def kill(self) -> None:
        """Second Ctrl-C: end the worker processes now (only ours, by pid)."""
        for p in list((getattr(self.pool, "_processes", None) or {}).values()):
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class RayBackend(_Bounded):
    """Ray tasks on a local instance (started here) or a cluster (``address``)."""

    name = "ray"

    def __init__(self, workers: int, address: str | None):
        try:
            import ray
        except ImportError:
            from models.errors import UserError

            raise UserError("--backend ray needs ray: pip install 'llmcosim[sweep]'") from None
        self.ray = ray
        self.started = False
        env = {k: os.environ[k] for k in ("LLMCOSIM_CACHE", "HF_HUB_OFFLINE")
               if k in os.environ}
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "runtime_env": {"env_vars": env}}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=workers, **kw)
            self.started = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", workers)))
        self.task = ray.remote(num_cpus=1)(evaluate_chunk)
        self.inflight: list[Any] = []

    def _submit(self, chunk: list[Point], cache_dir: str | None, version: str | None) -> None:
        self.inflight.append(self.task.remote(chunk, cache_dir, version))

    def _finished(self) -> Iterator[Rows]:
        done, self.inflight = self.ray.wait(self.inflight, num_returns=1)
        for ref in done:
            yield self.ray.get(ref)

    def drain(self) -> Iterator[Rows]:
        self.inflight = []
        return iter(())

    def stop(self) -> None:
        for ref in self.inflight:
            self.ray.cancel(ref, force=True)

    def kill(self) -> None:
        self.stop()

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_backend(name: str, workers: int, address: str | None = None) -> Any:
    if name == "local":
        if address:
            from models.errors import UserError

            raise UserError("--address is for --backend ray")
        return LocalBackend(workers)
    if name == "ray":
        return RayBackend(workers, address)
    from models.errors import UserError

    raise UserError(f"--backend {name!r}; allowed: local, ray")
