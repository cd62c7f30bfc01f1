"""The HADES report: speculative decoding on HADES, an A100 and FlightLLM (U280), side by side.

Run ``.venv/bin/python -m reports.hades`` (writes ``reports/hades.md``). Every row walks the same
seeded speculation rounds (``mapping.speculation``): HADES at the event-driven fidelity, the GPU
and FPGA at the roofline per pass (time-multiplexed draft), each against its own
non-speculative decode, so speedups compare designs, not simulators.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from mapping.acceptance import IIDAcceptance, expected_tokens, load_trace
from mapping.compression import quantize
from mapping.spec_workload import build_speculative_workload
from mapping.speculation import SpecConfig, eagle2_like_tree
from models.cache import get_graph
from models.graph import Phase
from sim.hades.affine import AffineGraph
from sim.hades.energy import ENERGY_TABLE, area_mm2
from sim.hades.simulate import simulate_speculative, speculative_roofline
from sim.hades.units import pass_cost
from sim.result import SimResult
from sim.roofline import graph_bound_s
from sim.spec import load_preset

__all__ = ["write_report"]

MODEL, DRAFT, PREFILL, DECODE = "llama2-7b", "llama-68m", 128, 512
DEVICES = ("hades", "gpu-a100", "flightllm-u280")
ROOT = Path(__file__).resolve().parent.parent


def _run(device: str, cfg: SpecConfig, spec=None, fidelity: str = "roofline") -> SimResult:
    hw = spec or load_preset(device)
    w = build_speculative_workload(MODEL, DRAFT, prefill=PREFILL, decode=DECODE, config=cfg)
    if hw.kind == "flightllm":   # the authors' setting: INT4 weights, INT8 KV (as reports/demo)
        w = w.map(lambda g: quantize(g, weight_bits=4, kv_bits=8))
    if hw.kind == "hades":
        return simulate_speculative(hw, w)
    if fidelity == "calibrated":  # the GPU kernel model fitted on H200 measurements
        from sim.registry import run

        return run(hw, w, "calibrated")
    return speculative_roofline(hw, w)


def _gamma_alpha(lines: list[str]) -> None:
    gammas, alphas = (1, 2, 4, 6, 8), (0.5, 0.6, 0.7, 0.8, 0.9)
    lines += ["## Speedup vs γ and α (chain, LLaMA-2-7B target, LLaMA-68M draft)", "",
              "Each cell: speculative tokens/s (speedup over the same device without "
              "speculation). Analytic E = (1 − α^(γ+1))/(1 − α) is the mean tokens per verify "
              "pass.", ""]
    for dev in DEVICES:
        base = None
        rows = []
        for a in alphas:
            cells = []
            for g in gammas:
                r = _run(dev, SpecConfig(gamma=g, acceptance=IIDAcceptance(a)))
                base = r.extra["baseline_tokens_per_s"]
                cells.append(f"{r.decode_tokens_per_s:,.0f} ({r.extra['speedup']:.2f}×)")
            rows.append(f"| α = {a} | " + " | ".join(cells) + " |")
        lines += [f"**{dev}** ({'event-driven' if dev == 'hades' else 'roofline'}; "
                  f"no speculation: {base:,.1f} tokens/s)", "",
                  "| | " + " | ".join(f"γ = {g}" for g in gammas) + " |",
                  "|---|" + "---|" * len(gammas), *rows, ""]


def _draft_units(lines: list[str]) -> None:
    hw = load_preset("hades")
    variants = {
        "separate engine, draft pinned in 144 MiB SRAM (preset)": hw,
        "separate engine, draft weights streamed from HBM": dataclasses.replace(
            hw, draft_sram_bytes=0),
        "shared: draft time-multiplexed on the main array": dataclasses.replace(
            hw, draft_engine="shared"),
    }
    lines += ["## Draft-unit choice on HADES (α = 0.8)", "",
              "| draft unit | γ | tokens/s | speedup | c = draft/target step | draft ms "
              "(exposed) | verify ms | pre-draft hits | area mm² |", "|---|---|---|---|---|---|"
              "---|---|---|"]
    for name, spec in variants.items():
        for g in (4, 8):
            r = _run("hades", SpecConfig(gamma=g, acceptance=IIDAcceptance(0.8)), spec)
            x = r.extra
            lines.append(f"| {name} | {g} | {r.decode_tokens_per_s:,.1f} | {x['speedup']:.2f}× "
                         f"| {x['draft_target_cost_ratio']:.4f} | {x['split_ms']['draft']:,.1f} "
                         f"| {x['split_ms']['verify']:,.1f} | {x['predraft_hits']}/{x['rounds']} "
                         f"| {area_mm2(spec)['total']:.1f} |")
    lines.append("")


def _tree_vs_chain(lines: list[str]) -> None:
    tree = eagle2_like_tree()
    lines += ["## Tree vs chain (EAGLE-2-like 60-node tree, configs/trees/eagle2_60.toml)", "",
              "Tree acceptance: children tried in rank order, each accepted with α "
              "independently (optimistic for low-rank siblings; see docs/hades.md).", "",
              "| device | drafting | α | tokens/pass | tokens/s | speedup |",
              "|---|---|---|---|---|---|"]
    for dev in DEVICES:
        for a in (0.6, 0.8):
            for label, cfg in (("chain γ=4", SpecConfig(gamma=4, acceptance=IIDAcceptance(a))),
                               ("tree 60", SpecConfig(tree=tree, acceptance=IIDAcceptance(a)))):
                r = _run(dev, cfg)
                lines.append(f"| {dev} | {label} | {a} | {r.extra['tokens_per_pass']:.2f} | "
                             f"{r.decode_tokens_per_s:,.1f} | {r.extra['speedup']:.2f}× |")
    hw = load_preset("hades")
    ind = dataclasses.replace(hw, kv_tree_mode="indirection")
    for name, spec in (("gather", hw), ("indirection", ind)):
        r = _run("hades", SpecConfig(tree=tree, acceptance=IIDAcceptance(0.8)), spec)
        lines.append(f"| hades, KV {name} | tree 60 | 0.8 | {r.extra['tokens_per_pass']:.2f} | "
                     f"{r.decode_tokens_per_s:,.1f} | {r.extra['speedup']:.2f}× "
                     f"(rollback {r.extra['split_ms']['rollback']:.2f} ms) |")
    lines.append("")


def _knee(lines: list[str]) -> None:
    hw = load_preset("hades")
    a100 = load_preset("gpu-a100")
    lines += ["## Verification cost vs verified positions (context 512)", "",
              "| positions n | HADES event ms | HADES roofline ms | A100 roofline ms |",
              "|---|---|---|---|"]
    for n in (1, 5, 16, 32, 61, 128, 256):
        g = get_graph(MODEL, Phase.DECODE if n == 1 else Phase.VERIFY, tokens=n, context=512)
        t = pass_cost(hw, AffineGraph.from_graphs(g), 512).time_s
        lines.append(f"| {n} | {t * 1e3:.2f} | {graph_bound_s(hw, g) * 1e3:.2f} | "
                     f"{graph_bound_s(a100, g) * 1e3:.2f} |")
    ridge = hw.peak_ops_per_s("float16") / hw.mem_bytes_per_s
    lines += ["", f"HADES ridge point: {ridge:.0f} FLOP/B, i.e. ~{ridge:.0f} positions per weight "
              "read (FP16); the A100's is 153.", ""]


def _claim(lines: list[str], main: SimResult, tree: SimResult, a100: SimResult,
           cal: SimResult) -> None:
    hf, vllm = 45.0, 88.0   # shared/papers: LLaMA2-7B FP16 batch 1 on A100 (FlightLLM artifact)
    tps = main.decode_tokens_per_s
    lines += [
        "## Against the ~7× vs A100 claim (HADES paper) and other speculation hardware", "",
        f"HADES, chain γ=4, α=0.8: **{tps:,.0f} tokens/s**; EAGLE-2-like tree, α=0.8: "
        f"**{tree.decode_tokens_per_s:,.0f} tokens/s**.", "",
        "| A100 reference | tokens/s | HADES chain ÷ | HADES tree ÷ |", "|---|---|---|---|",
        f"| HF PyTorch, measured (FlightLLM artifact) | {hf:.0f} | {tps / hf:.1f}× | "
        f"{tree.decode_tokens_per_s / hf:.1f}× |",
        f"| vLLM, measured (FlightLLM artifact) | {vllm:.0f} | {tps / vllm:.1f}× | "
        f"{tree.decode_tokens_per_s / vllm:.1f}× |",
        f"| roofline, no speculation | {a100.extra['baseline_tokens_per_s']:.0f} | "
        f"{tps / a100.extra['baseline_tokens_per_s']:.1f}× | "
        f"{tree.decode_tokens_per_s / a100.extra['baseline_tokens_per_s']:.1f}× |",
        f"| roofline, same speculation (γ=4, α=0.8) | {a100.decode_tokens_per_s:.0f} | "
        f"{tps / a100.decode_tokens_per_s:.1f}× | "
        f"{tree.decode_tokens_per_s / a100.decode_tokens_per_s:.1f}× |",
        f"| calibrated GPU model, no speculation (CUDA graphs) | "
        f"{cal.extra['baseline_tokens_per_s']:.0f} | "
        f"{tps / cal.extra['baseline_tokens_per_s']:.1f}× | "
        f"{tree.decode_tokens_per_s / cal.extra['baseline_tokens_per_s']:.1f}× |",
        f"| calibrated GPU model, same speculation (CUDA graphs) | "
        f"{cal.decode_tokens_per_s:.0f} | {tps / cal.decode_tokens_per_s:.1f}× | "
        f"{tree.decode_tokens_per_s / cal.decode_tokens_per_s:.1f}× |", "",
        "The calibrated rows use the GPU kernel model fitted on our H200 measurements with the "
        "A100's datasheet bandwidth and peak (docs/gpu.md), FP16 with CUDA graphs: "
        f"{cal.extra['baseline_tokens_per_s']:.0f} tokens/s without speculation, next to the "
        "87–89 the FlightLLM artifact measured with vLLM (with SmoothQuant INT8 in the paper's "
        "setup, so only a loose check). Against an A100 running the same speculation there, "
        f"HADES is {tps / cal.decode_tokens_per_s:.1f}× (chain).",
        "",
        "What produces the number: (1) **speculation itself** — E = 3.36 tokens per verify "
        "pass at α = 0.8, γ = 4 (and ~5.8 for the tree at an optimistic α = 0.8); (2) the "
        "**baseline chosen** — HF PyTorch reaches only ~30% of the A100's bandwidth roofline, "
        "so comparing a speculating ASIC at ~85% of its HBM bandwidth with HF eager decoding "
        "multiplies the two; (3) a **draft that costs almost nothing** on HADES (pinned in "
        "SRAM on its own engine: c ≈ 0.001 vs ~0.007 on the A100 roofline). HADES has *less* "
        "memory bandwidth than the A100 (1.64 vs 2.04 TB/s), so against an A100 running the "
        "same speculation at its roofline HADES is "
        f"{tps / a100.decode_tokens_per_s:.1f}×, and against the calibrated A100 (real "
        "kernels, "
        f"{cal.extra['baseline_tokens_per_s'] / a100.extra['baseline_tokens_per_s']:.0%} of its "
        f"roofline) {tps / cal.decode_tokens_per_s:.1f}×. The ~7× appears only against the HF "
        f"baseline ({tps / hf:.1f}× chain, {tree.decode_tokens_per_s / hf:.1f}× tree); against "
        f"vLLM it is {tps / vllm:.1f}–{tree.decode_tokens_per_s / vllm:.1f}×. "
        "Published designs report 1.5–4.2× (SPEQ 2.07×, DFVG 2.44–3.26×, SpecPIM 1.52/2.02×, "
        "AHASD 4.2×, SpecMamba 2.27×); our speedups over our own non-speculative HADES "
        "(table above) sit in that range.", ""]


def write_report(path: Path = ROOT / "reports" / "hades.md", echo=print) -> Path:
    t0 = time.perf_counter()
    cfg = SpecConfig(gamma=4, acceptance=IIDAcceptance(0.8))
    _run("hades", cfg)                      # warm the trace cache, then time a cached run
    t = time.perf_counter()
    main = _run("hades", cfg)
    sim_s = time.perf_counter() - t
    tree = _run("hades", SpecConfig(tree=eagle2_like_tree(), acceptance=IIDAcceptance(0.8)))
    a100 = _run("gpu-a100", cfg)
    a100_cal = _run("gpu-a100", cfg, fidelity="calibrated")
    x = main.extra
    lines = [
        "# HADES: speculative decoding on a speculation-aware ASIC, an A100 and FlightLLM", "",
        f"Generated by `.venv/bin/python -m reports.hades` on {datetime.now(UTC):%Y-%m-%d} "
        f"(LLaMA-2-7B FP16 target, LLaMA-68M draft, prefill {PREFILL}, decode {DECODE}, "
        "batch 1, seed 0). Design and assumptions: docs/hades.md.", "",
        "## HADES preset, γ = 4, α = 0.8 (i.i.d.)", "",
        f"- {main.decode_tokens_per_s:,.1f} tokens/s ({main.decode_ms_per_token:.3f} ms/token), "
        f"{x['speedup']:.2f}× over HADES without speculation "
        f"({x['baseline_tokens_per_s']:,.1f} tokens/s)",
        f"- mean accepted {x['mean_accepted']:.2f}, tokens per verify pass "
        f"{x['tokens_per_pass']:.2f} (analytic E = {expected_tokens(0.8, 4):.2f}; only "
        f"{x['rounds']} rounds here — the 1% check of E runs 40k rounds in the tests)",
        "- time split (ms): " + ", ".join(f"{k} {v:,.2f}" for k, v in x["split_ms"].items()),
        "- unit busy: " + ", ".join(f"{k} {v:.1%}" for k, v in x["utilisation"].items()),
        f"- energy {main.energy_j:,.1f} J ({main.tokens_per_j:.2f} tokens/J); by component: "
        + ", ".join(f"{k} {v:,.2f}" for k, v in x["energy_breakdown_j"].items() if k != "total"),
        "- area (PE + SRAM, mm²): " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                 x["area_mm2"].items()),
        f"- **simulation speed**: {sim_s:.2f} s wall for the 512-token speculative decode "
        f"(cached graphs; event loop {x['sim_wall_s']:.2f} s) — target < 30 s", "",
    ]
    trace = load_trace(ROOT / "traces" / "run.jsonl")
    rt = _run("hades", SpecConfig(gamma=trace.gamma, acceptance=trace))
    lines += [f"Trace-driven (traces/run.jsonl, synthetic example, γ = {trace.gamma}): "
              f"{rt.decode_tokens_per_s:,.1f} tokens/s, mean accepted "
              f"{rt.extra['mean_accepted']:.2f}, {rt.extra['speedup']:.2f}×.", ""]
    echo("gamma/alpha sweep ...")
    _gamma_alpha(lines)
    echo("draft units ...")
    _draft_units(lines)
    echo("tree vs chain ...")
    _tree_vs_chain(lines)
    echo("verification knee ...")
    _knee(lines)
    _claim(lines, main, tree, a100, a100_cal)
    lines += ["## Energy/area table (45 nm figures, scaled to the preset's node)", "",
              "| entry | value | unit | source |", "|---|---|---|---|"]
    lines += [f"| {k} | {e.value:g} | {e.unit} | {e.source} |" for k, e in ENERGY_TABLE.items()]
    lines += ["", f"Report built in {time.perf_counter() - t0:.0f} s.", ""]
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    print(write_report(echo=lambda s: print(s, file=sys.stderr)))
