"""``compare --best-batch``: each device at the decode batch it is best at, next to batch 1.

Per device, decode runs at batch 1, 2, 4, ... 64 (:data:`BATCHES`, or the ``--best-batch``
list) at the fidelity ``compare`` gives it (:func:`reports.compare.plan_device`), until the
first batch that does not fit: a simulator's refusal (FlightLLM's B buffer or HBM) or a result
whose weights + KV cache exceed the device memory (``SimResult.fits_memory``). That batch is the
device's limit, reported with its reason. The best batch is the one with the highest aggregate
decode tokens/s (ties: the smaller batch); with ``--max-tpot-ms`` only batches whose time per
output token (one decode pass) is within the bound count, and the first over it ends the search.

Only decode is simulated (the workload's prefill length sets the decode contexts; no prefill
pass), so the search costs two decode traces per batch (cached) and the decode simulations.
FlightLLM's cycle-level decode runs with the artifact's 16-token length buckets
(``sim.flightllm.simulate.DECODE_BUCKET``, as the table) up to 256 decode passes and with
:data:`SEARCH_BUCKET`-token buckets beyond (:func:`search_bucket`; that constant gives the cost).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from models.errors import UserError
from models.workload import Workload
from reports.compare import (
    fpga_roofline_workload,
    plan_device,
    row_from_result,
    with_overrides,
)
from sim.flightllm.simulate import DECODE_BUCKET
from sim.registry import run
from sim.spec import HardwareSpec

__all__ = ["BATCHES", "BEST_COLUMNS", "SEARCH_BUCKET", "BatchPoint", "BestBatch",
           "best_cells", "best_markdown", "check_max_tpot", "decode_workload", "parse_batches",
           "pick_best", "search", "search_bucket", "search_devices"]

BATCHES = (1, 2, 4, 8, 16, 32, 64)  # issue 19: GPUs are used at batch 8-64
_MAX_BATCH = 1024   # a sanity bound on --best-batch entries (each is traced)
# FlightLLM decode length buckets for the search. Measured on this repo (LLaMA-2-7B, prefill 128,
# decode 512, U280 and VHK158): 64-token buckets give 0.2-0.4% fewer tokens/s than the
# artifact's 16 (the padded keys are read) at batch 1 and 8, and run 3.4-4.3x faster (U280
# batch 8: 4.6 s instead of 15.4 s); 128-token buckets lose 0.6-0.9%.
SEARCH_BUCKET = 64
_EXACT_UP_TO = 256   # decode passes: at most 16 programs per batch in the artifact's buckets


def search_bucket(decode_tokens: int) -> int:
    """FlightLLM decode bucket of the search: the artifact's up to 256 decode passes (at most
    16 programs per batch), :data:`SEARCH_BUCKET` beyond."""
    return DECODE_BUCKET if decode_tokens <= _EXACT_UP_TO else SEARCH_BUCKET
_GPU_BATCH_NOTE = (
    "batch > 1 GPU steps are modelled, not measured: the calibrated model (fitted on batch-1 "
    "steps and per-op curves) times the traced batch-B graph{validated}; measured batch curves "
    "wait for a GPU (issue 19, sim/gpu/calibrate.py Baseline.batch)")


@dataclass(frozen=True)
class BatchPoint:
    """One decode batch of one device."""

    batch: int
    decode_tokens_per_s: float          # all sequences together
    decode_ms_per_token: float          # one decode pass: each sequence's time per token
    tokens_per_j: float | None

    @property
    def tokens_per_s_per_sequence(self) -> float:
        return self.decode_tokens_per_s / self.batch


@dataclass(frozen=True)
class BestBatch:
    """One device's search: the batches that fit, the best, and where and why it stopped."""

    hw: str
    kind: str
    fidelity: str
    points: tuple[BatchPoint, ...]
    best: int | None                    # the best batch (None: none fits or meets the bound)
    limit: int | None                   # the first batch that does not fit (None: all did)
    limit_kind: str = ""                # "B buffer", "memory", "TPOT", "refused"
    limit_reason: str = ""
    notes: tuple[str, ...] = ()

    def point(self, batch: int | None) -> BatchPoint | None:
        return next((p for p in self.points if p.batch == batch), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["points"] = [{**asdict(p), "tokens_per_s_per_sequence": p.tokens_per_s_per_sequence}
                       for p in self.points]
        d["notes"] = list(self.notes)
        best = self.point(self.best)
        d["batch1_tokens_per_s"] = (p1.decode_tokens_per_s if (p1 := self.point(1)) else None)
        d["best_tokens_per_s"] = best.decode_tokens_per_s if best else None
        d["best_tokens_per_s_per_sequence"] = best.tokens_per_s_per_sequence if best else None
        d["best_tokens_per_j"] = best.tokens_per_j if best else None
        return d


# -- inputs -----------------------------------------------------------------------------------
def parse_batches(text: str) -> tuple[int, ...]:
    """``--best-batch 1,2,4,8``: increasing whole numbers from 1 (batch 1 is the reference)."""
    try:
        batches = tuple(int(x) for x in text.split(","))
    except ValueError:
        batches = ()
    if not batches or batches[0] != 1 or any(b > _MAX_BATCH for b in batches) \
            or any(a >= b for a, b in zip(batches, batches[1:], strict=False)):
        raise UserError(f"--best-batch {text!r}: give increasing batch sizes separated by "
                        f"commas, starting at 1 and at most {_MAX_BATCH} (default "
                        f"{','.join(map(str, BATCHES))})")
    return batches


def check_max_tpot(text: str | None) -> float | None:
    """``--max-tpot-ms 50``: a time per output token in ms, above 0 (None: no bound)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise UserError(f"--max-tpot-ms {text!r}: give a time per output token in ms above 0, "
                        "e.g. 50")
    return value


def decode_workload(model: Any, prefill: int, decode: int, batch: int, dtype: str = "float16",
                    use_cache: bool = True) -> Workload:
    """``decode`` passes of ``batch`` sequences after a prompt of ``prefill`` tokens, without
    the prefill pass (decode throughput is what the search compares)."""
    from models.cache import get_graph  # traces (imports torch) only on a cache miss
    from models.graph import Phase
    from models.zoo import get_model

    entry = get_model(model) if isinstance(model, str) else model

    if prefill < 1 or decode < 1:
        raise UserError(f"--best-batch compares decode: it needs --prefill >= 1 and --decode "
                        f">= 1 (got {prefill} and {decode})")
    kw = {"batch": batch, "dtype": dtype, "use_cache": use_cache}
    first = get_graph(entry, Phase.DECODE, context=prefill, **kw)
    last = first if decode == 1 else get_graph(entry, Phase.DECODE,
                                               context=prefill + decode - 1, **kw)
    return Workload(entry.name, batch, prefill, decode, None, first, last)


# -- the search -------------------------------------------------------------------------------
def pick_best(points: Iterable[BatchPoint], max_tpot_ms: float | None = None) -> int | None:
    """The batch with the highest decode tokens/s (the smaller on a tie) among ``points``
    within ``max_tpot_ms``; None when there is none."""
    ok = [p for p in points if max_tpot_ms is None or p.decode_ms_per_token <= max_tpot_ms]
    if not ok:
        return None
    return max(ok, key=lambda p: (p.decode_tokens_per_s, -p.batch)).batch


def _check_fpga_batch(spec: HardwareSpec, w: Workload) -> None:
    """FlightLLM's largest decode batch (its B buffer) also bounds the roofline search: it is
    the design's limit, not the simulator's."""
    from mapping.flightllm.decode import check_batch_buffers
    from sim.flightllm.timing import arch_of

    if w.batch > 1 and w.decode_first is not None:
        check_batch_buffers(w.decode_first, arch_of(spec))  # type: ignore[arg-type]


def _limit_kind(message: str) -> str:
    if "B buffer" in message:
        return "B buffer"
    return "memory" if "does not fit" in message or "HBM" in message else "refused"


def _device_notes(spec: HardwareSpec, fidelity: str, tried: list[BatchPoint], bucket: int,
                  reference_tps: float | None) -> list[str]:
    """What the device's numbers rest on beyond batch 1; ``reference_tps``: the table's batch-1
    decode tokens/s (16-token buckets), to state what a coarser bucket cost."""
    notes = []
    if spec.kind == "gpu" and fidelity == "calibrated":
        from sim.gpu.calibrate import PRESET_OF_DEVICE, baselines

        measured = [r for d, b in baselines().items() if PRESET_OF_DEVICE.get(d) == spec.name
                    for r in b.batch]
        notes.append(_GPU_BATCH_NOTE.format(validated=(
            f" ({len(measured)} measured batch steps of this GPU validate it: "
            "`llmcosim gpu-baseline validate`)" if measured else "")))
        notes.append("tokens/J at every batch uses the batch-1 decode power; a GPU draws more "
                     "at a larger batch, so tokens/J there is an upper bound")
    elif spec.kind == "gpu":
        notes.append("roofline: an upper bound on tokens/s at every batch, energy at the TDP")
    elif spec.kind == "flightllm" and fidelity == "cycle":
        if bucket == DECODE_BUCKET:
            what = f"the artifact's {bucket}-token length buckets, as the table"
        else:
            p1 = next((p for p in tried if p.batch == 1), None)
            cost = (f"batch 1 {p1.decode_tokens_per_s / reference_tps - 1:+.2%} against the "
                    "table" if p1 and reference_tps else "LLaMA-2-7B [128, 512]: 0.2-0.4% "
                    "fewer tokens/s at batch 1 and 8, measured")
            what = (f"{bucket}-token length buckets (the table: the artifact's "
                    f"{DECODE_BUCKET}) for a ~4x faster search; {cost}")
        notes.append(f"cycle-level decode in {what}; tokens/J at the constant board power")
    if len(tried) > 1 and tried[-1].decode_tokens_per_s < 1.01 * tried[-2].decode_tokens_per_s:
        notes.append(f"tokens/s within 1% from batch {tried[-2].batch} to {tried[-1].batch}: "
                     "a larger batch buys (almost) nothing here")
    return notes


def search(spec: HardwareSpec, workload_at: Callable[[int], Workload],
           batches: Iterable[int] = BATCHES, *, cycle: bool = True,
           gpu_stack: str | None = None, max_tpot_ms: float | None = None,
           power_overridden: bool = False, reference_tps: float | None = None,
           progress: Callable[[], None] | None = None) -> BestBatch:
    """Decode on ``spec`` at each of ``batches`` in turn (``workload_at(batch)``), up to the
    first that does not fit (or, with ``max_tpot_ms``, is over the bound).
    ``reference_tps``: the comparison table's batch-1 decode tokens/s, for the notes."""
    points: list[BatchPoint] = []
    limit, kind, reason, fidelity, bucket = None, "", "", "", DECODE_BUCKET
    for b in batches:
        w = workload_at(b)
        fidelity, options = plan_device(spec, w, cycle, gpu_stack)
        if spec.kind == "flightllm" and fidelity == "cycle":
            options["decode_bucket"] = bucket = search_bucket(w.decode_tokens)
        try:
            if spec.kind == "flightllm" and fidelity == "roofline":
                _check_fpga_batch(spec, w)   # the cycle simulator checks it itself
                w = fpga_roofline_workload(w)
            r = run(spec, w, fidelity, **options)
        except UserError as e:
            limit, kind, reason = b, _limit_kind(str(e)), str(e)
        else:
            if not r.fits_memory:
                limit, kind = b, "memory"
                reason = next((n for n in r.notes if "weights + KV cache" in n), "")
            else:
                row = row_from_result(spec, r, "", power_overridden=power_overridden)
                p = BatchPoint(b, row.decode_tokens_per_s, row.decode_ms_per_token,
                               row.tokens_per_j)
                if max_tpot_ms is not None and p.decode_ms_per_token > max_tpot_ms:
                    limit, kind = b, "TPOT"
                    reason = (f"batch {b}: {p.decode_ms_per_token:.2f} ms per output token > "
                              f"--max-tpot-ms {max_tpot_ms:g} ({p.decode_tokens_per_s:,.1f} "
                              "tokens/s)")
                else:
                    points.append(p)
        if progress is not None:
            progress()
        if limit is not None:
            break
    return BestBatch(spec.name, spec.kind, fidelity, tuple(points),
                     pick_best(points, max_tpot_ms), limit, kind, reason,
                     tuple(_device_notes(spec, fidelity, points, bucket, reference_tps)))


def search_devices(specs: Iterable[HardwareSpec], workload_at: Callable[[int], Workload],
                   batches: Iterable[int] = BATCHES, *,
                   overrides: Mapping[str, Mapping[str, float]] | None = None,
                   overrides_from: str = "", reference: Mapping[str, float] | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   **kw: Any) -> list[BestBatch]:
    """:func:`search` per device (with an assumptions file's power and price, as ``compare``);
    ``reference``: batch-1 decode tokens/s by device from the table; ``progress(done, total)``
    counts runs, the total assuming every batch fits."""
    specs, batches = list(specs), tuple(batches)
    total, done = len(specs) * len(batches), 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    out = []
    for spec in specs:
        o = (overrides or {}).get(spec.name, {})
        spec = with_overrides(spec, o.get("power_w"), o.get("price_usd"), overrides_from)
        before = done
        out.append(search(spec, workload_at, batches, progress=tick,
                          power_overridden=o.get("power_w") is not None,
                          reference_tps=(reference or {}).get(spec.name), **kw))
        done = before + len(batches)   # batches past the limit are not run
        if progress is not None:
            progress(done, total)
    return out


# -- output -----------------------------------------------------------------------------------
BEST_COLUMNS = ("device", "fidelity", "tokens/s at batch 1", "best batch", "decode tokens/s",
                "tokens/s per sequence", "ms/token", "tokens/J", "limit")


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def best_cells(b: BestBatch) -> list[str]:
    """One device's cells in :data:`BEST_COLUMNS` order (the CLI and the Markdown)."""
    p1, best = b.point(1), b.point(b.best)
    limit = (f"{b.limit} ({b.limit_kind})" if b.limit is not None
             else f"none to {b.points[-1].batch}" if b.points else "-")
    return [b.hw, b.fidelity, _num(p1 and p1.decode_tokens_per_s, ",.1f"),
            "-" if best is None else str(best.batch),
            _num(best and best.decode_tokens_per_s, ",.1f"),
            _num(best and best.tokens_per_s_per_sequence, ",.1f"),
            _num(best and best.decode_ms_per_token, ",.2f"),
            _num(best and best.tokens_per_j, ".3f"), limit]


def best_markdown(found: list[BestBatch], batches: Iterable[int],
                  max_tpot_ms: float | None = None) -> str:
    """The "Best batch" section of ``compare.md``."""
    batches = tuple(batches)
    bound = (f", among batches within {max_tpot_ms:g} ms per output token (`--max-tpot-ms`)"
             if max_tpot_ms is not None else "")
    lines = ["## Best batch", "",
             f"Decode at batch {', '.join(map(str, batches))} until the first that does not fit "
             f"(the limit); the best batch has the highest aggregate decode tokens/s{bound}. "
             "Tokens/s per sequence and ms/token (one decode pass) at the best batch; tokens/J "
             "decode only.", "",
             "| " + " | ".join(BEST_COLUMNS) + " |",
             "|" + "|".join("---" if i in (0, 1, len(BEST_COLUMNS) - 1) else "---:"
                            for i in range(len(BEST_COLUMNS))) + "|"]
    lines += ["| " + " | ".join(best_cells(b)) + " |" for b in found]
    lines += ["", "| device | " + " | ".join(f"b={x}" for x in batches) + " |",
              "|---|" + "---:|" * len(batches)]
    for b in found:
        tps = {p.batch: f"{p.decode_tokens_per_s:,.1f}" for p in b.points}
        lines.append(f"| {b.hw} | " + " | ".join(
            tps.get(x, "limit" if x == b.limit else "") for x in batches) + " |")
    notes = [f"- {b.hw}: limit at batch {b.limit}: {b.limit_reason}" for b in found
             if b.limit is not None]
    notes += [f"- {b.hw}: {n}" for b in found for n in b.notes]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
