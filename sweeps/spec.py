"""Sweep specs (TOML) -> validated axes, constraints and design points.

A sweep file has four tables (every key optional except ``hardware.preset``)::

    [sweep]        name, out, sampling (grid|random|lhs|list), samples, seed, fidelity,
                   constraints = ["expr", ...], cache (per-program result cache, default true)
    [hardware]     preset = "flightllm-u280" (or a list), then any numeric spec field
    [workload]     model, prefill, decode, batch, dtype
    [compression]  weight_bits, kv_bits ("none" or absent: the model dtype), sparsity (a
                   FlightLLM compression TOML, configs/sparsity/), keep (kept fraction of its
                   [[linear]] rules)
    [speculation]  gamma, alpha ("0.8" or "0.9,0.8,0.7"), tree ("chain", a .toml file or
                   inline parents), draft (zoo model), adaptive (with [serving]: the draft
                   length chosen per iteration): any of them turns speculation on
    [serving]      rate ("2/s", "120/min" or per second), requests (lengths TOML or JSONL
                   trace), num_requests, requests_seed, slo ("ttft=500ms,tpot=50ms"),
                   token_budget: a rate turns the point into a serving run (llmcosim serve;
                   workload.batch is then the most requests running at once, prefill and
                   decode are unused) with goodput, TTFT/TPOT percentiles, ... as columns
    [[points]]     sampling = "list": one table per point (keys as above; preset or hw)

Any value may be a scalar (fixed), a list (an axis over those values) or a range table
``{min, max, steps, scale = "linear"|"log", integer}``, checked by :mod:`sweeps.values`. Every
error names the key and what is allowed (:class:`UserError`). A relative file path (model,
preset file, sparsity, tree, requests) is looked for next to the sweep file first, then in the
working directory, then in the configs/ fallbacks (:mod:`sweeps.paths`); ``sweep.out`` stays
relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import UserError, empty, read_text
from sweeps.expr import Expr, parse_expr
from sweeps.paths import file_digest, resolve_inputs, resolve_path, sparsity_digest, tree_parents
from sweeps.resources import RESOURCE_METRICS
from sweeps.sampling import Axis, grid, latin_hypercube, random_samples
from sweeps.serving import SERVING_METRICS
from sweeps.values import NO_SPECULATION, SERVING_KEYS, alpha_text, check_axis, check_value

__all__ = ["INPUTS", "Point", "SweepSpec", "load_sweep", "parse_sweep"]

SAMPLINGS = ("grid", "random", "lhs", "list")
# Point inputs other than hardware fields, with their defaults.
INPUTS: dict[str, Any] = {"hw": None, "model": "llama2-7b", "prefill": 128, "decode": 512,
                          "batch": 1, "dtype": "float16", "weight_bits": None, "kv_bits": None,
                          "fidelity": "roofline", "gamma": None, "alpha": None, "tree": None,
                          "draft": None, "adaptive": None, "sparsity": None, "keep": None,
                          "rate": None, "requests": None, "num_requests": None,
                          "requests_seed": None, "slo": None, "token_budget": None}
# [serving] defaults once a rate is given (those of `llmcosim serve`)
SERVING_DEFAULTS: dict[str, Any] = {"requests": "configs/serving/sharegpt_like.toml",
                                    "num_requests": 200, "requests_seed": 0,
                                    "slo": "ttft=500ms,tpot=50ms", "token_budget": 512}
# Inputs added after the first release: left out of the content hash while unset, so points
# of older sweeps keep their hashes (and --resume keeps working).
_LATER = ("gamma", "alpha", "tree", "draft", "adaptive", "sparsity", "keep", "tree_parents",
          "sparsity_digest", "rate", "requests", "num_requests", "requests_seed", "slo",
          "token_budget", "requests_digest")
_SECTIONS = {
    "sweep": ("name", "out", "sampling", "samples", "seed", "fidelity", "constraints", "cache"),
    "workload": ("model", "prefill", "decode", "batch", "dtype"),
    "compression": ("weight_bits", "kv_bits", "sparsity", "keep"),
    "speculation": ("gamma", "alpha", "tree", "draft", "adaptive"),
    "serving": SERVING_KEYS,
}
SPECULATION = _SECTIONS["speculation"]
_DERIVED = ("kind", "peak_ops_per_s", "mem_bytes_per_s", "mem_capacity_bytes", "power_w")


@dataclass(frozen=True)
class Point:
    """One design point: everything a simulation depends on, hashable by content."""

    hw: str
    model: str
    prefill: int
    decode: int
    batch: int
    dtype: str
    weight_bits: int | None
    kv_bits: int | None
    fidelity: str
    overrides: tuple[tuple[str, float | int | str], ...] = ()   # spec field -> value, sorted
    model_digest: str = ""                                # content hash of a workload file
    derived: tuple[tuple[str, str], ...] = ()             # spec field -> expression of fields
    gamma: int | None = None          # draft tokens per round (chain)
    alpha: str | None = None          # acceptance: "0.8" (i.i.d.) or "0.9,0.8" (per position)
    tree: str | None = None           # token tree as given (file or parents); None: chain
    draft: str | None = None          # draft model (default llama-68m when speculating)
    adaptive: bool | None = None      # serving: up to gamma drafts, chosen per iteration
    sparsity: str | None = None       # FlightLLM compression config file
    keep: float | None = None         # kept fraction of the config's [[linear]] rules
    tree_parents: tuple[int, ...] | None = None   # the tree's content
    sparsity_digest: str = ""                     # content hash of the sparsity file
    rate: float | None = None         # serving: Poisson requests per second (None: no serving)
    requests: str | None = None       # serving: lengths TOML or JSONL trace
    num_requests: int | None = None
    requests_seed: int | None = None
    slo: str | None = None            # serving: "ttft=500ms,tpot=50ms"
    token_budget: int | None = None   # serving: tokens per iteration
    requests_digest: str = ""         # content hash of the requests file

    @property
    def speculative(self) -> bool:
        return any(getattr(self, k) is not None for k in SPECULATION)

    @property
    def serving(self) -> bool:
        return self.rate is not None

    @property
    def key(self) -> str:
        d = dataclasses.asdict(self)
        for k in _LATER:
            if d[k] in (None, ""):
                del d[k]
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def inputs(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in INPUTS}
        d.update(self.overrides)
        return d


@dataclass(frozen=True)
class SweepSpec:
    name: str
    out: Path
    sampling: str
    samples: int
    seed: int
    axes: tuple[Axis, ...]
    fixed: dict[str, Any]
    constraints: tuple[Expr, ...]
    listed: tuple[dict[str, Any], ...] = ()
    derived: tuple[tuple[str, str], ...] = ()
    cache: bool = True
    text: str = ""
    field_types: dict[str, type] = field(default_factory=dict)  # numeric spec fields

    @property
    def axis_names(self) -> list[str]:
        names = [a.name for a in self.axes]
        for p in self.listed:
            names += [k for k in p if k not in names]
        return names

    def points(self) -> list[Point]:
        """Every design point, duplicates (same content hash) removed, in a fixed order."""
        if self.sampling == "list":
            raw = [dict(p) for p in self.listed]
        elif self.sampling == "grid":
            raw = grid(list(self.axes))
        elif self.sampling == "random":
            raw = random_samples(list(self.axes), self.samples, self.seed)
        else:
            raw = latin_hypercube(list(self.axes), self.samples, self.seed)
        seen: dict[str, Point] = {}
        for values in raw:
            p = self._point({**self.fixed, **values})
            seen.setdefault(p.key, p)
        return list(seen.values())

    def _point(self, v: dict[str, Any]) -> Point:
        if v["gamma"] == NO_SPECULATION:   # a chain: plain decode (no speculation input set,
            # so it hashes as a point of a sweep without [speculation]); a tree ignores gamma
            v = {**v, **dict.fromkeys(SPECULATION if v["tree"] is None else ("gamma",))}
        overrides = tuple(sorted((k, self.field_types[k](x)) for k, x in v.items()
                                 if k not in INPUTS))
        model = str(v["model"])
        tree = v["tree"]
        parents = tree_parents("speculation.tree", tree) if tree is not None else None
        alpha = alpha_text("speculation.alpha", v["alpha"]) if v["alpha"] is not None else None
        sparsity = v["sparsity"]
        keep = None if v["keep"] is None or sparsity is None else round(float(v["keep"]), 6)
        return Point(hw=str(v["hw"]), model=model, prefill=int(v["prefill"]),
                     decode=int(v["decode"]), batch=int(v["batch"]), dtype=str(v["dtype"]),
                     weight_bits=v["weight_bits"], kv_bits=v["kv_bits"],
                     fidelity=str(v["fidelity"]), overrides=overrides,
                     model_digest=file_digest(model), derived=self.derived,
                     gamma=None if parents or v["gamma"] is None else int(v["gamma"]),
                     alpha=alpha, tree=tree, draft=v["draft"], sparsity=sparsity, keep=keep,
                     adaptive=v["adaptive"] or None,
                     tree_parents=parents,
                     sparsity_digest=sparsity_digest(sparsity) if sparsity else "",
                     **_serving_fields(v))


def _serving_fields(v: dict[str, Any]) -> dict[str, Any]:
    """The [serving] inputs of a point: all None without a rate, defaults filled with one."""
    if v.get("rate") is None:
        return {}
    out = {k: v.get(k) if v.get(k) is not None else d for k, d in SERVING_DEFAULTS.items()}
    req = out["requests"] = resolve_path(str(out["requests"]), "serving.requests", base=None,
                                         where="sweep", strict=False)   # the default too
    digest = file_digest(req, ".jsonl") or file_digest(req, ".toml")
    return {"rate": float(v["rate"]), **out, "requests_digest": digest}


def load_sweep(path: str | Path) -> SweepSpec:
    p = Path(path)
    return parse_sweep(read_text(p, "sweep file", kind="TOML"), where=str(p),
                       default_name=p.stem, base=p.absolute().parent)


def parse_sweep(text: str, where: str = "<sweep>", default_name: str = "sweep",
                base: Path | None = None) -> SweepSpec:
    """A sweep from TOML; relative file paths are looked for in ``base`` first (sweeps.paths)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where}: malformed TOML: {e}") from None
    if not data:
        raise UserError(empty("sweep file", where, "[hardware] preset = ... and the axes to "
                              "sweep (configs/sweeps/*.toml)"))
    allowed = ("sweep", "hardware", "workload", "compression", "speculation", "serving",
               "points")
    for key in data:
        if key not in allowed:
            raise UserError(f"{where}: unknown table [{key}]; allowed: {', '.join(allowed)}")
    sec = {s: data.get(s, {}) for s in ("sweep", "workload", "compression", "speculation",
                                         "serving", "hardware")}
    for s, keys in _SECTIONS.items():
        if not isinstance(sec[s], dict):
            raise UserError(f"{where}: [{s}] must be a table")
        for k in sec[s]:
            if k not in keys:
                raise UserError(f"{where}: unknown key {s}.{k}; allowed: {', '.join(keys)}")
    sw = sec["sweep"]
    sampling = sw.get("sampling", "grid")
    if sampling not in SAMPLINGS:
        raise UserError(f"{where}: sweep.sampling = {sampling!r}; allowed: {', '.join(SAMPLINGS)}")
    samples = sw.get("samples", 0)
    if sampling in ("random", "lhs") and (not isinstance(samples, int) or samples < 1):
        raise UserError(f"{where}: sweep.samples must be a whole number >= 1 for "
                        f"sampling = {sampling!r} (got {samples!r})")
    seed = sw.get("seed", 0)
    if not isinstance(seed, int):
        raise UserError(f"{where}: sweep.seed must be a whole number (got {seed!r})")
    name = str(sw.get("name", default_name))

    hw = dict(sec["hardware"])
    if "preset" not in hw:
        raise UserError(f"{where}: hardware.preset is required (see `llmcosim hw`)")
    presets = resolve_inputs({"hw": hw.pop("preset")}, _loc, base, where)["hw"]
    field_types = _field_types(where, presets if isinstance(presets, list) else [presets])
    derived = _derived(where, hw.pop("derived", {}), field_types)
    if "adaptive" in sec["speculation"] and "rate" not in sec["serving"]:
        raise UserError(f"{where}: speculation.adaptive chooses the draft length per serving "
                        "iteration: it needs a [serving] table with a rate")
    if "rate" in sec["serving"] and "tree" in sec["speculation"]:
        raise UserError(f"{where}: speculation.tree with [serving]: serving speculates with "
                        "chains only (speculation.gamma); drop the tree or the [serving] table")
    raw: dict[str, Any] = {"hw": presets, "fidelity": sw.get("fidelity", INPUTS["fidelity"])}
    raw.update(sec["workload"])
    raw.update(sec["compression"])
    raw.update(sec["speculation"])
    raw.update(sec["serving"])
    raw.update(hw)
    raw = resolve_inputs(raw, _loc, base, where)   # file paths: sweeps.paths

    fixed: dict[str, Any] = dict(INPUTS)
    axes: list[Axis] = []
    for key, value in raw.items():
        loc = _loc(key)
        if isinstance(value, list | dict):
            axes.append(check_axis(where, loc, key, value, field_types, sampling))
        else:
            fixed[key] = check_value(where, loc, key, value, field_types)
    listed: list[dict[str, Any]] = []
    if sampling == "list":
        pts = data.get("points")
        if not isinstance(pts, list) or not pts:
            raise UserError(f"{where}: sampling = 'list' needs [[points]] tables")
        for i, pt in enumerate(pts):
            pt = resolve_inputs({("hw" if k == "preset" else k): v for k, v in pt.items()},
                                lambda k, i=i: f"points[{i}].{'preset' if k == 'hw' else k}",
                                base, where)
            listed.append({k: check_value(where, f"points[{i}].{'preset' if k == 'hw' else k}",
                                          k, v, field_types) for k, v in pt.items()})
        for a in axes:
            fixed[a.name] = a.values[0] if a.values else a.lo
        axes = []
    elif "points" in data:
        raise UserError(f"{where}: [[points]] needs sweep.sampling = 'list'")
    if sampling == "grid":
        for a in axes:
            if a.values is None and not a.steps:
                raise UserError(f"{where}: {_loc(a.name)} is a range: give steps for a grid, "
                                "or use sampling = 'random' or 'lhs'")

    cons = sw.get("constraints", [])
    if not isinstance(cons, list):
        raise UserError(f"{where}: sweep.constraints must be a list of expression strings")
    known = set(INPUTS) | set(field_types) | set(_DERIVED) | set(RESOURCE_METRICS)
    if "rate" in sec["serving"]:   # serving outputs: checked on each row after simulating
        known |= set(SERVING_METRICS)
    constraints = tuple(parse_expr(c, f"{where}: sweep.constraints[{i}]", known)
                        for i, c in enumerate(cons))
    for c in constraints:
        if c.names & set(SERVING_METRICS) and c.names - set(SERVING_METRICS):
            raise UserError(f"{where}: sweep.constraints {c.text!r}: a rule on serving "
                            "metrics is checked after simulating and may name only them "
                            f"({', '.join(SERVING_METRICS)}); write input rules separately")
    out = Path(sw.get("out", f"results/{name}.db"))
    return SweepSpec(name=name, out=out, sampling=sampling, samples=samples, seed=seed,
                     axes=tuple(axes), fixed=fixed, constraints=constraints,
                     listed=tuple(listed), derived=derived, cache=bool(sw.get("cache", True)),
                     text=text, field_types=field_types)


def _derived(where: str, table: Any, types: dict[str, type]) -> tuple[tuple[str, str], ...]:
    """``[hardware.derived]``: fields computed from others per point (kept consistent)."""
    if not isinstance(table, dict):
        raise UserError(f"{where}: [hardware.derived] must be a table of field = \"expression\"")
    out = []
    for k, text in table.items():
        if k not in types:
            raise UserError(f"{where}: hardware.derived.{k}: unknown field; allowed: "
                            f"{', '.join(types)}")
        parse_expr(text, f"{where}: hardware.derived.{k}", types)
        out.append((k, text))
    return tuple(out)


def _loc(key: str) -> str:
    if key in ("hw",):
        return "hardware.preset"
    for s, keys in _SECTIONS.items():
        if key in keys:
            return f"{s}.{key}"
    return f"hardware.{key}"


def _field_types(where: str, presets: list[Any]) -> dict[str, type]:
    """Spec fields common to every preset of the sweep, with their Python types (numeric
    fields with a range, and string knobs such as ``draft_engine``)."""
    from sim.spec import load_preset

    common: dict[str, type] | None = None
    for name in presets:
        if not isinstance(name, str):
            raise UserError(f"{where}: hardware.preset entries must be preset names or paths")
        spec = load_preset(name)
        types = {f.name: (int if f.type in ("int", int) else float)
                 for f in dataclasses.fields(spec) if "range" in f.metadata}
        types.update({f.name: str for f in dataclasses.fields(spec)   # e.g. draft_engine
                      if f.type in ("str", str) and f.name not in ("name", "description")})
        common = types if common is None else {k: v for k, v in common.items() if k in types}
    return common or {}
