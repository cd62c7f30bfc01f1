"""``compare --best-batch``: the best batch is the argmax over the batches that fit; the first
batch that does not fit is the limit, with its reason; bad flags are one-line errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from llmcosim.cli import main
from models.errors import UserError
from models.graph import Graph, Phase
from models.workload import Workload
from reports import best_batch as bb
from sim.spec import load_preset
from tests.unit.graphs import decoder_like

_KV_PER_SEQ = 12e9   # bytes of KV cache per sequence: an H100 (80 GiB) holds 7 sequences


def _batched(g: Graph, batch: int, kv_per_seq: float = 0.0) -> Graph:
    """``g`` (batch 1) as ``batch`` sequences: activations, FLOPs and KV traffic x batch, the
    weights once. ``kv_per_seq``: each attention read made that large (a long cache)."""
    nodes = []
    for n in g.nodes:
        kv = n.kv_read_bytes if not (kv_per_seq and n.kv_read_bytes) \
            else kv_per_seq / sum(1 for m in g.nodes if m.kv_read_bytes)
        nodes.append(dataclasses.replace(
            n, flops=n.flops * batch, act_bytes=n.act_bytes * batch,
            kv_read_bytes=int(kv * batch), kv_write_bytes=n.kv_write_bytes * batch,
            in_shapes=tuple((batch, *s[1:]) for s in n.in_shapes),
            out_shape=(batch, *n.out_shape[1:])))
    return dataclasses.replace(g, batch=batch, nodes=tuple(nodes))


def _workload_at(hidden: int = 64, kv_per_seq: float = 0.0):
    def at(batch: int) -> Workload:
        first = _batched(decoder_like(hidden=hidden, context=8), batch, kv_per_seq)
        last = _batched(decoder_like(hidden=hidden, context=11), batch, kv_per_seq)
        return Workload("toy", batch, 8, 4, None, first, last)
    return at


def _point(batch: int, tps: float, ms: float = 10.0) -> bb.BatchPoint:
    return bb.BatchPoint(batch, tps, ms, None)


# -- the best batch ---------------------------------------------------------------------------
def test_best_is_the_argmax_not_the_largest():
    pts = [_point(1, 50), _point(2, 90), _point(4, 120), _point(8, 110)]
    assert bb.pick_best(pts) == 4
    assert bb.pick_best([_point(1, 50), _point(2, 50)]) == 1      # a tie: the smaller batch
    assert bb.pick_best([]) is None


def test_tpot_bound_excludes_slow_batches():
    pts = [_point(1, 50, 20), _point(2, 90, 22), _point(4, 120, 33)]
    assert bb.pick_best(pts, max_tpot_ms=30) == 2
    assert bb.pick_best(pts, max_tpot_ms=10) is None


def test_search_stops_at_memory_and_reports_the_reason():
    """Roofline on an H100: KV of 12 GB per sequence, so batch 8 (96 GB) does not
    fit; the best is the argmax of the batches before it."""
    found = bb.search(load_preset("gpu-h100"), _workload_at(kv_per_seq=_KV_PER_SEQ),
                      cycle=False)
    assert [p.batch for p in found.points] == [1, 2, 4]
    assert found.limit == 8 and found.limit_kind == "memory"
    assert "weights + KV cache need" in found.limit_reason and "gpu-h100" in found.limit_reason
    tps = {p.batch: p.decode_tokens_per_s for p in found.points}
    assert found.best == max(tps, key=tps.get)
    assert found.fidelity == "roofline"
    assert any("upper bound" in n for n in found.notes)
    cells = bb.best_cells(found)
    assert cells[bb.BEST_COLUMNS.index("limit")] == "8 (memory)"
    assert cells[bb.BEST_COLUMNS.index("best batch")] == str(found.best)


def test_search_tpot_bound_ends_the_search():
    at = _workload_at(kv_per_seq=_KV_PER_SEQ)
    free = bb.search(load_preset("gpu-h100"), at, cycle=False)
    ms = {p.batch: p.decode_ms_per_token for p in free.points}
    bound = (ms[1] + ms[2]) / 2    # batch 1 within, batch 2 over
    found = bb.search(load_preset("gpu-h100"), at, cycle=False, max_tpot_ms=bound)
    assert found.best == 1 and found.limit == 2 and found.limit_kind == "TPOT"
    assert "--max-tpot-ms" in found.limit_reason


def test_flightllm_b_buffer_is_the_limit_at_the_roofline_too():
    """A 16,384-wide linear input: the U280's 128 KiB B buffer holds 8 sequences' vectors."""
    spec = load_preset("flightllm-u280")
    found = bb.search(spec, _workload_at(hidden=16384), (1, 2, 4, 8, 16, 32), cycle=False)
    assert [p.batch for p in found.points] == [1, 2, 4, 8]
    assert found.limit == 16 and found.limit_kind == "B buffer"
    assert "the largest batch for toy is 8" in found.limit_reason


def test_every_batch_fits_reports_no_limit():
    found = bb.search(load_preset("gpu-h100"), _workload_at(), (1, 2, 4), cycle=False)
    assert found.limit is None and found.best == 4    # roofline: more sequences, more tokens/s
    assert bb.best_cells(found)[-1] == "none to 4"
    d = found.to_dict()
    assert d["best_tokens_per_s_per_sequence"] == pytest.approx(d["best_tokens_per_s"] / 4)
    assert d["batch1_tokens_per_s"] == found.points[0].decode_tokens_per_s


# -- inputs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["0,1", "2,4", "1,4,2", "1,1", "x", "1,,2", "", "1,99999"])
def test_bad_batch_lists(text):
    with pytest.raises(UserError, match="--best-batch"):
        bb.parse_batches(text)


def test_batch_list_default_and_custom():
    assert bb.parse_batches(",".join(map(str, bb.BATCHES))) == bb.BATCHES
    assert bb.parse_batches("1,3,5") == (1, 3, 5)


@pytest.mark.parametrize("argv", [
    ["--best-batch", "1,4,2"], ["--best-batch", "two"], ["--best-batch", "--max-tpot-ms", "-1"],
    ["--best-batch", "--max-tpot-ms", "fast"], ["--max-tpot-ms", "50"],
    ["--best-batch", "--decode", "0"],
    ["--best-batch", "--assumptions", "configs/compare/flightllm_paper.toml",
     "--headline-only"]])
def test_cli_bad_values_are_one_line_errors(argv, capsys):
    assert main(["compare", "--model", "gpt2", "--no-cycle", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


# -- the CLI ----------------------------------------------------------------------------------
def _cache_gpt2(monkeypatch, tmp_path, batches) -> None:
    """Cached synthetic gpt2 graphs (prefill 8, decode 4) at each batch: no tracing."""
    from models.cache import _key, cache_dir
    from models.request import TraceRequest
    from models.zoo import get_model

    monkeypatch.setenv("LLMCOSIM_CACHE", str(tmp_path / "cache"))
    entry = get_model("gpt2")
    pre = dataclasses.replace(decoder_like(context=0), phase=Phase.PREFILL, tokens=8)
    graphs = [(pre, TraceRequest.make(entry, "prefill", tokens=8))]
    for b in batches:
        graphs += [(_batched(decoder_like(context=c), b),
                    TraceRequest.make(entry, "decode", context=c, batch=b)) for c in (8, 11)]
    for g, req in graphs:
        path = cache_dir() / f"{_key(entry, req)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        g.to_json(path)


def test_cli_writes_the_best_batch_section(monkeypatch, tmp_path, capsys):
    _cache_gpt2(monkeypatch, tmp_path, (1, 2, 4))
    out = tmp_path / "out"
    assert main(["compare", "--model", "gpt2", "--prefill", "8", "--decode", "4", "--no-cycle",
                 "--hw", "gpu-h100,hades", "--best-batch", "1,2,4", "--out", str(out),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    best = data["best_batch"]
    assert best["batches"] == [1, 2, 4] and best["max_tpot_ms"] is None
    assert [d["hw"] for d in best["devices"]] == ["gpu-h100", "hades"]
    for d in best["devices"]:
        tps = {p["batch"]: p["decode_tokens_per_s"] for p in d["points"]}
        assert d["best"] == max(tps, key=tps.get)
    # batch 1 of the search is the table's decode (roofline: decode is the same without prefill)
    table = {r["hw"]: r["decode_tokens_per_s"] for r in data["devices"]}
    for d in best["devices"]:
        assert d["batch1_tokens_per_s"] == pytest.approx(table[d["hw"]])
    md = (out / "compare.md").read_text()
    assert "## Best batch" in md and "| tokens/s at batch 1 |" in md
    assert json.loads((out / "compare.json").read_text())["best_batch"] == best

    assert main(["compare", "--model", "gpt2", "--prefill", "8", "--decode", "4", "--no-cycle",
                 "--hw", "gpu-h100", "--best-batch", "1,2,4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "best batch" in printed and "tokens/s per sequence" in printed


def test_flightllm_search_bucket_is_the_tables_up_to_256_passes():
    from sim.flightllm.simulate import DECODE_BUCKET

    assert bb.search_bucket(8) == bb.search_bucket(256) == DECODE_BUCKET
    assert bb.search_bucket(512) == bb.SEARCH_BUCKET > DECODE_BUCKET


def test_calibrated_gpu_says_batches_are_modelled():
    from sim.gpu.calibrate import PRESET_OF_DEVICE, baselines

    found = bb.search(load_preset("gpu-a100"), _workload_at(), (1, 2))
    assert found.fidelity == "calibrated"
    note = next(n for n in found.notes if n.startswith("batch > 1 GPU steps"))
    assert "modelled, not measured" in note and "wait for a GPU" in note
    measured = any(b.batch for d, b in baselines().items()
                   if PRESET_OF_DEVICE.get(d) == "gpu-a100")
    assert ("measured batch steps of this GPU" in note) == measured
    assert any("batch-1 decode power" in n for n in found.notes)
