"""FlightLLM commands: compile (binary + storage), ablate, simulate options, Perfetto trace."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmcosim.cli import main
from mapping.flightllm.codegen import generate
from mapping.flightllm.compression import apply_compression, config_from_dict
from mapping.flightllm.isa import storage_bytes
from mapping.flightllm.synthetic import llama_like
from models.graph import Phase
from models.zoo import get_model
from sim.flightllm import cli as fcli
from sim.flightllm.simulate import simulate_graph
from sim.flightllm.timing import arch_of
from sim.flightllm.trace import write_trace
from sim.spec import load_preset

SPEC = load_preset("flightllm-vhk158")
CFG = config_from_dict({"attention": {"prefill": "causal"},
                        "linear": [{"match": ["q_proj", "k_proj"], "keep": 0.7}]})
KW = {"layers": 2, "hidden": 512, "heads": 8, "ffn": 1024}
CFG_FILE = "configs/sparsity/dense_int8.toml"   # causal attention: fits the small graphs


def _small(entry, phase, tokens, context):
    if phase == "decode":
        return llama_like(phase=Phase.DECODE, context=context, **KW)
    return llama_like(phase=Phase.PREFILL, tokens=tokens, **KW)


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(fcli, "_graph", _small)


def _counts(g):
    return generate(apply_compression(g, CFG), arch_of(SPEC)).counts()


def test_counts_depend_on_tiles_only():
    """What the storage table relies on: decode counts equal within a 512-key tile (one score
    MV per head per tile) and affine in key tiles, prefill counts equal within a 128 bucket
    and affine in the number of row tiles."""
    d = {c: storage_bytes(_counts(llama_like(phase=Phase.DECODE, context=c, **KW)))
         for c in (15, 511, 527, 1023, 1535)}   # keys = context + 1: 1, 1, 2, 2, 3 tiles
    assert d[15] == d[511] and d[527] == d[1023]
    assert d[1535] - d[1023] == d[1023] - d[511] > 0
    p = {t: storage_bytes(_counts(llama_like(phase=Phase.PREFILL, tokens=t, **KW)))
         for t in (100, 128, 256, 384)}
    assert p[100] == p[128]
    assert p[384] - p[256] == p[256] - p[128] > 0


def test_prefill_storage_counts_the_attention_exactly():
    """Past 512 keys a query group's K/V take several B-buffer chunks, so prefill programs
    grow faster than the row tiles: the storage table's per-bucket bytes (affine part +
    the attention counted from its grouping) equal the compiled program's."""
    def prog_bytes(t):
        return storage_bytes(_counts(llama_like(phase=Phase.PREFILL, tokens=t, **KW)))

    def attn(t):
        g = llama_like(phase=Phase.PREFILL, tokens=128, **KW)
        return fcli._attention_bytes(SPEC, g, t, CFG)

    lin = {t: prog_bytes(t) - attn(t) for t in (128, 256, 1280)}
    assert lin[1280] - lin[128] == 9 * (lin[256] - lin[128])
    affine_all = prog_bytes(128) + 9 * (prog_bytes(256) - prog_bytes(128))
    assert prog_bytes(1280) > affine_all          # the attention is not affine


def test_compile_writes_program_and_summary(small, tmp_path, capsys):
    out = tmp_path / "prog"
    assert main(["compile", "--hw", "flightllm-u280", "--model", "llama2-7b", "--phase",
                 "decode", "--context", "512", "--out", str(out), "--json", "--sparsity",
                 CFG_FILE]) == 0
    s = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["core0.bin", "core1.bin", "core2.bin",
                                                     "nodes.json", "summary.json", "summary.md"]
    words = sum(np.fromfile(out / f"core{c}.bin", dtype=np.uint32).size for c in range(3))
    assert 4 * words == s["program_bytes"] == storage_bytes(s["counts"])
    assert sum(s["counts"].values()) == s["instructions"]
    st = s["storage"]
    assert st["prefill_programs"] == 16 and st["decode_programs"] == 128
    assert st["per_length_bytes"] > st["bucketed_bytes"] > 0
    assert "Instruction storage" in (out / "summary.md").read_text()
    # the binary lists back: as many lines as instructions, LDs named by their op
    assert main(["disasm", str(out / "core1.bin")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == s["files"][1]["instructions"]
    first_ld = next(x for x in lines if " LD " in x)
    assert "nbytes=512 " in first_ld and first_ld.endswith("; model.embed_tokens/embedding")
    assert main(["disasm", str(out / "core1.bin"), "--start", "3", "--count", "2"]) == 0
    assert [x.split()[0] for x in capsys.readouterr().out.splitlines()] == ["3", "4"]
    for argv, msg in ([str(out / "nodes.json")], "not a whole number of 32-bit words"), \
            ([str(out / "none.bin")], "no such file"), \
            ([str(out / "core1.bin"), "--count", "-1"], "--count >= 0"):
        assert main(["disasm", *argv]) == 2
        assert msg in capsys.readouterr().err


def test_ablate_rows(small):
    res = fcli.ablate(load_preset("flightllm-u280"), get_model("llama2-7b"), cfg=CFG,
                      prefill=128, context=64)
    rows = {r["ablation"].split(" (")[0]: r for r in res["rows"]}
    on = rows["off-chip -> always-on-chip decode"]
    assert on["ours_x"] >= 1.0 and on["bw_util"][1] >= on["bw_util"][0]
    assert rows["INT8 -> mixed precision"]["ours_x"] > 1.0
    assert "|" in fcli.ablate_md(res)
    # N:M on every linear: prefill (MM-bound) gains with every halving of N; decode at 8:16
    # loads as many index as weight bytes (4-bit index per kept INT4 weight): no gain there
    nm = {(r["phase"], r["pattern"]): r for r in res["nm"]}
    gains = [nm["prefill", p]["speedup_x"] for p in ("dense", "8:16", "4:16", "2:16")]
    assert all(b > a for a, b in zip(gains, gains[1:], strict=False)), gains
    assert nm["decode", "8:16"]["speedup_x"] == pytest.approx(1.0, abs=0.1)
    assert nm["decode", "2:16"]["speedup_x"] > 1.5
    assert "indices" in nm["decode", "8:16"]["bound"]
    assert "N:M on every linear" in fcli.ablate_md(res)


@pytest.mark.parametrize("argv, msg", [
    (["--hw", "flightllm-vhk158", "--fidelity", "cycle", "--weight-bits", "16"],
     "--weight-bits = 16 on FlightLLM (its dequantizer takes 2, 3, 4, 8-bit weights)"),
    (["--hw", "flightllm-vhk158", "--fidelity", "cycle", "--kv-bits", "4"],
     "stores the KV cache in 8 bits (FlightLLM supports only that)"),
    (["--hw", "flightllm-u280", "--tree=-1,0,0", "--batch", "2", "--fidelity", "cycle"],
     "--tree at --batch 2 on flightllm-u280 at --fidelity cycle"),
    (["--hw", "gpu-a100", "--sparsity", "configs/sparsity/flightllm_qk70.toml"],
     "FlightLLM presets at --fidelity cycle"),
    (["--hw", "flightllm-vhk158", "--fidelity", "cycle", "--sparsity", "nope.toml"], "nope"),
])
def test_simulate_flag_errors(argv, msg, capsys):
    assert main(["simulate", "--model", "llama2-7b", *argv]) == 2
    assert msg in capsys.readouterr().err


def test_batched_verify_past_the_b_buffer_is_refused(monkeypatch, capsys):
    """Chains at batch B run cycle-level; a batch whose verify rows (B x (gamma + 1)) do not
    fit the B buffer is refused with the limit (LLaMA-2-7B's down_proj: 11 rows on the U280),
    on synthetic graphs of its widths instead of the traced model."""
    import sim.hades.speculate as hs
    from tests.unit.test_flightllm_spec_batch import WIDE, _workload

    def build(target, draft, *, prefill, decode, config, batch, **_):
        return _workload(batch, gamma=config.gamma, prefill=prefill, decode=decode, kw=WIDE)
    monkeypatch.setattr(hs, "build_speculative_workload", build)
    assert main(["simulate", "--model", "llama2-7b", "--hw", "flightllm-u280", "--draft",
                 "llama-68m", "--gamma", "4", "--batch", "3", "--fidelity", "cycle"]) == 2
    err = capsys.readouterr().err
    assert "FlightLLM verify at batch 3 of 5 tokens per sequence" in err
    assert "3 x 5 = 15 rows of 11008 bytes" in err and "at most 11 rows" in err


def test_compile_rejects_other_hw(tmp_path, capsys):
    assert main(["compile", "--hw", "gpu-a100", "--model", "llama2-7b", "--out",
                 str(tmp_path)]) == 2
    assert "FlightLLM preset" in capsys.readouterr().err


@pytest.mark.parametrize("argv, msg", [
    (["compile", "--max-len", "0"], "--max-len must be at least 1, got 0"),
    (["compile", "--prefill-bucket", "100"], "multiple of the MM tile's 128 rows, got 100"),
    (["ablate", "--prefill", "0"], "--prefill >= 1 and --context >= 0, got 0 and 512"),
    (["ablate", "--context", "-3"], "--prefill >= 1 and --context >= 0, got 128 and -3"),
])
def test_compile_and_ablate_name_the_bad_flag(argv, msg, capsys, tmp_path):
    out = ["--out", str(tmp_path / "prog")] if argv[0] == "compile" else []
    assert main([argv[0], "--hw", "flightllm-u280", "--model", "llama2-7b", *argv[1:],
                 *out]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "prog").exists()   # nothing written before the check


def test_trace_tracks_per_core_and_queue(tmp_path):
    g = apply_compression(llama_like(phase=Phase.DECODE, context=64, **KW), CFG)
    res = simulate_graph(SPEC, g)
    path = write_trace(tmp_path / "t.json", [("decode", res)], SPEC)
    d = json.loads(path.read_text())
    names = {e["args"]["name"] for e in d["traceEvents"] if e.get("name") == "thread_name"}
    for c in range(SPEC.cores):
        assert {f"core{c}/MV", f"core{c}/MISC", f"core{c}/SYS"} <= names
        assert any(n.startswith(f"core{c}/LD port") for n in names)
    spans = [e for e in d["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == res.program.total + 1 and d["otherData"]["dropped_events"] == 0
    end_us = max(e["ts"] + e["dur"] for e in spans)
    assert end_us == pytest.approx(res.seconds * 1e6)


@pytest.fixture
def small_workload(monkeypatch):
    """``simulate`` on the small llama-like graphs instead of a traced model."""
    import models.cache
    from models.workload import Workload

    def get_workload(entry, *, prefill, decode, **_):
        return Workload(entry.name, 1, prefill, decode, _small(entry, "prefill", prefill, 0),
                        _small(entry, "decode", 0, prefill),
                        _small(entry, "decode", 0, prefill + decode - 1))

    monkeypatch.setattr(models.cache, "get_workload", get_workload)


@pytest.mark.parametrize("extra, fidelity", [
    ([], "cycle"),                                   # the command: cycle by default
    (["--fidelity", "roofline"], "roofline"),
    (["--weight-bits", "4"], "cycle"),               # the compression config takes the bits
])
def test_simulate_default_fidelity(small_workload, capsys, extra, fidelity):
    argv = ["simulate", "--hw", "flightllm-vhk158", "--model", "llama2-7b", "--prefill", "128",
            "--decode", "2", "--json", *extra]
    if fidelity == "cycle":
        argv += ["--sparsity", CFG_FILE]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["fidelity"] == fidelity
    if fidelity == "cycle":
        x = r["extra"]
        assert 0 < x["decode_dsp_utilisation"] <= SPEC.mv_macs_per_cycle / SPEC.mm_macs_per_cycle
        assert 0 < x["prefill_dsp_utilisation"] <= x["prefill_dsp_dense_utilisation"] <= 1


def test_weight_bits_stay_cycle_level(small_workload, capsys):
    """``--weight-bits`` on FlightLLM sets the compression config's bits: the cycle-level run
    loads twice the weight bytes per decode token at 8 bits as at 4 (no roofline fallback)."""
    out = {}
    for bits in ("4", "8"):
        assert main(["simulate", "--hw", "flightllm-vhk158", "--model", "llama2-7b",
                     "--prefill", "128", "--decode", "2", "--json", "--sparsity", CFG_FILE,
                     "--weight-bits", bits]) == 0
        out[bits] = json.loads(capsys.readouterr().out)
        assert out[bits]["fidelity"] == "cycle"
    b4, b8 = (out[b]["extra"]["decode_hbm_bytes_per_token"] for b in ("4", "8"))
    assert 1.5 < b8 / b4 < 2.05   # weights dominate; KV, activations and FSB do not double
    assert out["8"]["decode_ms_per_token"] > out["4"]["decode_ms_per_token"]


def test_dsp_utilisation_counts_kept_macs():
    """N:M halves the MACs a q/k tile performs, not its dense equivalent; both are bounded
    by the MAC slots the pass had."""
    g = llama_like(phase=Phase.PREFILL, tokens=128, **KW)
    half = config_from_dict({"attention": {"prefill": "causal"},
                             "linear": [{"match": ["q_proj", "k_proj"], "keep": 0.5}]})
    dense = simulate_graph(SPEC, apply_compression(g, config_from_dict(
        {"attention": {"prefill": "causal"}})))
    sparse = simulate_graph(SPEC, apply_compression(g, half))
    assert dense.dsp_utilisation == pytest.approx(dense.dsp_dense_utilisation)
    assert sparse.dsp_utilisation < sparse.dsp_dense_utilisation <= 1
    work = dense.dsp_utilisation * dense.cycles     # MACs / slots per cycle: pass-independent
    assert sparse.dsp_dense_utilisation * sparse.cycles == pytest.approx(work)


@pytest.mark.parametrize("spare, msg", [
    (None, r"the weights alone pass it at model\.layers\.\d+\."),  # half fit
    (1e4, r"\+ KV cache at context"),          # weights fit, 10 kB left: the KV cache does not
])
def test_model_too_large_for_the_hbm(spare, msg):
    import dataclasses

    from models.errors import UserError
    from models.workload import Workload
    from sim.flightllm.simulate import simulate

    w = Workload("small", 1, 128, 2, _small(None, "prefill", 128, 0),
                 _small(None, "decode", 0, 128), _small(None, "decode", 0, 129))
    weights = sum(p.bytes for p in apply_compression(w.prefill, CFG).params)
    cap = weights / 2 if spare is None else weights + spare
    with pytest.raises(UserError, match=msg):
        simulate(dataclasses.replace(SPEC, hbm_bytes=cap), w, CFG)


def test_buckets_are_configurable(small, tmp_path, capsys):
    """--prefill-bucket/--decode-bucket set the storage table's programs (and the simulate
    command's decode programs); a prefill bucket must be whole MM row tiles."""
    args = ["compile", "--hw", "flightllm-u280", "--model", "llama2-7b", "--out",
            str(tmp_path), "--json", "--sparsity", CFG_FILE, "--max-len", "1024"]
    assert main(args) == 0
    base = json.loads(capsys.readouterr().out)["storage"]
    assert main(args + ["--prefill-bucket", "256", "--decode-bucket", "64"]) == 0
    st = json.loads(capsys.readouterr().out)["storage"]
    assert (base["prefill_programs"], base["decode_programs"]) == (8, 64)
    assert (st["prefill_programs"], st["decode_programs"]) == (4, 16)
    assert st["per_length_bytes"] == base["per_length_bytes"]
    assert st["bucketed_bytes"] < base["bucketed_bytes"]
    assert main(args + ["--prefill-bucket", "100"]) == 2
    assert "multiple of the MM tile's 128 rows" in capsys.readouterr().err


def test_simulate_decode_bucket(small_workload, capsys):
    """Decode steps share programs per bucket: bucket 1 runs every context's own program."""
    out = {}
    for b in ("1", "16"):
        assert main(["simulate", "--hw", "flightllm-vhk158", "--model", "llama2-7b",
                     "--prefill", "20", "--decode", "24", "--decode-bucket", b, "--json",
                     "--sparsity", CFG_FILE]) == 0
        out[b] = json.loads(capsys.readouterr().out)["extra"]["decode_buckets"]
    assert out == {"1": 24, "16": 2}   # contexts 20..43: keys 21..44 -> 32, 48
    assert main(["simulate", "--hw", "gpu-a100", "--model", "llama2-7b", "--prefill", "8",
                 "--decode", "4", "--decode-bucket", "4"]) == 2
    assert "--decode-bucket applies to FlightLLM" in capsys.readouterr().err


def test_dense_ablation_keeps_bits_and_biases():
    """The dense side of "dense -> N:M" differs from the config only in sparsity: no keep or
    pattern, causal prefill attention, the rules' bits and biases kept."""
    cfg = config_from_dict({"weight_bits": 4, "attention": {"prefill": "causal"}, "linear": [
        {"match": "q_proj", "keep": 0.5, "bits": 8}, {"match": "o_proj", "bias": True}]})
    d = fcli._dense(cfg)
    assert [(r.keep, r.pattern, r.bits, r.bias) for r in d.rules] == [
        (None, None, 8, None), (None, None, None, True)]
    assert d.prefill_attention == "causal" and d.masks_path is None
