"""Requests for a serving run: arrival times and prompt/output lengths (torch-free).

Arrivals are Poisson at a rate (``2/s``, ``120/min``, ``0.5``) with lengths drawn from a TOML
distribution file (``configs/serving/sharegpt_like.toml``), or read from a JSONL trace with one
``{"arrival_s": ..., "prompt_tokens": ..., "output_tokens": ...}`` object per line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import UserError, read_toml

__all__ = ["LengthDist", "Request", "check_lengths", "load_lengths", "load_trace",
           "parse_rate", "poisson_requests"]

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Request:
    rid: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int   # generated tokens, the first one produced by the prefill


def parse_rate(text: str | float) -> float:
    """Requests per second from ``2/s``, ``120/min``, ``7200/h`` or a bare number (per second)."""
    raw = str(text).strip()
    num, _, unit = raw.partition("/")
    try:
        value = float(num)
    except ValueError:
        raise UserError(f"--rate {raw!r}: expected a number of requests per second such as "
                        "2/s, 120/min or 0.5") from None
    if unit and unit.strip() not in _UNITS:
        raise UserError(f"--rate {raw!r}: unknown unit {unit!r}; allowed: "
                        f"{', '.join('/' + u for u in _UNITS)}")
    rate = value / _UNITS[unit.strip()] if unit else value
    if not math.isfinite(rate) or rate <= 0:
        raise UserError(f"--rate {raw!r}: the rate must be > 0 requests per second")
    return rate


@dataclass(frozen=True)
class LengthDist:
    """Token lengths: a log-normal (median, sigma) or empirical bins, clipped to [min, max]."""

    kind: str                      # "lognormal" or "bins"
    median: float = 0.0
    sigma: float = 0.0
    bins: tuple[tuple[int, int, float], ...] = ()   # (low, high inclusive, weight)
    min: int = 1
    max: int = 1 << 30

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "lognormal":
            x = rng.lognormal(math.log(self.median), self.sigma, n)
        else:
            w = np.array([b[2] for b in self.bins], dtype=float)
            pick = rng.choice(len(self.bins), size=n, p=w / w.sum())
            lo = np.array([b[0] for b in self.bins])[pick]
            hi = np.array([b[1] for b in self.bins])[pick]
            x = lo + rng.random(n) * (hi - lo + 1)   # uniform within the bin
        return np.clip(np.floor(x), self.min, self.max).astype(np.int64)


def _dist(section: Any, where: str) -> LengthDist:
    if not isinstance(section, dict):
        raise UserError(f"{where}: missing table (needs distribution = \"lognormal\" or \"bins\")")
    kind = section.get("distribution")
    lo, hi = int(section.get("min", 1)), int(section.get("max", 1 << 30))
    if lo < 1 or hi < lo:
        raise UserError(f"{where}: need 1 <= min <= max, got min={lo}, max={hi}")
    if kind == "lognormal":
        med, sig = section.get("median"), section.get("sigma")
        if not isinstance(med, int | float) or not isinstance(sig, int | float) \
                or med <= 0 or sig < 0:
            raise UserError(f"{where}: lognormal needs median > 0 and sigma >= 0")
        return LengthDist("lognormal", float(med), float(sig), min=lo, max=hi)
    if kind == "bins":
        bins = section.get("bins")
        ok = isinstance(bins, list) and bins and all(
            isinstance(b, list) and len(b) == 3 and 1 <= b[0] <= b[1] and b[2] >= 0
            for b in bins)
        if not ok or not sum(b[2] for b in bins) > 0:
            raise UserError(f"{where}: bins must be [[low, high, weight], ...] with "
                            "1 <= low <= high and weights >= 0, not all 0")
        return LengthDist("bins", bins=tuple((int(a), int(b), float(c)) for a, b, c in bins),
                          min=lo, max=hi)
    raise UserError(f"{where}: distribution {kind!r}; allowed: lognormal, bins")


def load_lengths(path: str | Path) -> tuple[LengthDist, LengthDist]:
    """(prompt, output) length distributions from a TOML with [prompt] and [output] tables."""
    data = read_toml(path, "--requests: length distribution file")
    return _dist(data.get("prompt"), f"{path} [prompt]"), _dist(data.get("output"),
                                                                f"{path} [output]")


def poisson_requests(rate_per_s: float, n: int, prompt: LengthDist, output: LengthDist,
                     seed: int) -> list[Request]:
    """``n`` requests with exponential inter-arrival gaps (mean 1/rate), the first at 0."""
    if n < 1:
        raise UserError(f"--num-requests must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate_per_s, n)
    arrivals = np.concatenate([[0.0], np.cumsum(gaps[1:])])
    p, o = prompt.sample(rng, n), output.sample(rng, n)
    return [Request(i, float(arrivals[i]), int(p[i]), int(o[i])) for i in range(n)]


def load_trace(path: str | Path, limit: int | None = None) -> list[Request]:
    """Requests from a JSONL trace, sorted by arrival; UserError naming the first bad line."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--requests trace {str(p)!r} does not exist")
    out: list[Request] = []
    for lineno, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            a, pt, ot = obj["arrival_s"], obj["prompt_tokens"], obj["output_tokens"]
            ok = isinstance(a, int | float) and math.isfinite(a) and a >= 0 and \
                isinstance(pt, int) and isinstance(ot, int) and pt >= 1 and ot >= 1
        except (json.JSONDecodeError, TypeError, KeyError):
            ok = False
        if not ok:
            raise UserError(f"{p}:{lineno}: expected {{\"arrival_s\": >= 0, \"prompt_tokens\": "
                            f"int >= 1, \"output_tokens\": int >= 1}}, got {line.strip()[:80]!r}")
        out.append(Request(len(out), float(a), pt, ot))
    if not out:
        raise UserError(f"--requests trace {str(p)!r} holds no requests")
    out.sort(key=lambda r: (r.arrival_s, r.rid))
    out = out[:limit] if limit else out
    return [Request(i, r.arrival_s, r.prompt_tokens, r.output_tokens) for i, r in enumerate(out)]


def check_lengths(reqs: list[Request], model: str, max_positions: int | None) -> None:
    """UserError for the first request whose prompt + output exceeds the model's positions."""
    if max_positions is None:
        return
    for r in reqs:
        if r.prompt_tokens + r.output_tokens > max_positions:
            raise UserError(f"request {r.rid}: prompt {r.prompt_tokens} + output "
                            f"{r.output_tokens} tokens = {r.prompt_tokens + r.output_tokens} "
                            f"exceeds {model}'s maximum of {max_positions} positions")
