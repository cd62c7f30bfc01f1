"""Pictures: every axis says its quantity and unit; a one-design Pareto front says so; the
roofline draws one roof per device over the data's range; compare.png names GPU stacks."""

from __future__ import annotations

import json

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest

from reports.labels import is_labelled, label, scale
from reports.sweep_plots import axis_figure, pareto_figure, roofline_figure
from sweeps.analysis import pareto


def _labels(fig) -> list[str]:
    """Every non-empty axis label of every axes (colour bars included)."""
    out = []
    for ax in fig.axes:
        out += [t for t in (ax.get_xlabel(), ax.get_ylabel()) if t]
    return out


def _assert_units(fig) -> None:
    labels = _labels(fig)
    assert labels
    bad = [t for t in labels if not is_labelled(t)]
    assert not bad, f"axis labels without a unit or known unitless quantity: {bad}"


def _sweep(n_clock: int = 3) -> pd.DataFrame:
    """A FlightLLM-like sweep: clock x HBM channels on two presets; decode bound by HBM."""
    rows = []
    for hw, peak in (("flightllm-u280", 5.5e12), ("flightllm-vhk158", 9e12)):
        for ch in (16, 32):
            for clock in np.linspace(150e6, 300e6, n_clock):
                bw = ch * 14.4e9
                tps = bw / 3.6e9                     # 3.6 GB of weights per token
                flops, nbytes = 13e9 * 64, 3.6e9 * 64
                rows.append({"hw": hw, "model": "llama2-7b", "hbm_channels": ch,
                             "clock_hz": clock, "decode_tokens_per_s": tps,
                             "tokens_per_j": tps / 45.0, "decode_ms_per_token": 1e3 / tps,
                             "decode": 64, "peak_ops_per_s": peak, "mem_bytes_per_s": bw,
                             "result": json.dumps({"counts": {"decode_flops": flops,
                                                              "decode_bytes": nbytes}})})
    return pd.DataFrame(rows)


def test_label_table():
    assert label("decode_tokens_per_s") == "decode throughput (tokens/s)"
    assert label("tokens_per_j") == "decode energy efficiency (tokens/J)"
    assert (label("clock_hz"), scale("clock_hz")) == ("clock (MHz)", 1e-6)
    # fields not in the table: the unit from the suffix (sim/units.py), scaled for reading
    assert (label("uram_bytes"), scale("uram_bytes")) == ("uram (MB)", 1e-6)
    assert label("hbm_channel_bytes_per_s") == "hbm channel (GB/s)"
    assert is_labelled("cores") and is_labelled("clock (MHz)")
    assert not is_labelled("clock_hz") and not is_labelled("tokens_per_j")


def test_sweep_plots_carry_units():
    ok = _sweep()
    front = pareto(ok, "tokens_per_s,tokens_per_j")
    figs = [pareto_figure(ok, front, ["decode_tokens_per_s", "tokens_per_j"], title="t",
                          colour_by="hbm_channels"),
            axis_figure(ok, "clock_hz", title="t", colour_by="hbm_channels"),
            axis_figure(ok, "hw", title="t", colour_by="clock_hz"),
            roofline_figure(ok, title="t")]
    for fig in figs:
        _assert_units(fig)
    # the clock axis is in MHz, not Hz
    xs = np.concatenate([c.get_offsets()[:, 0] for c in figs[1].axes[0].collections])
    assert xs.min() == pytest.approx(150) and xs.max() == pytest.approx(300)


def test_colour_by_many_numbers_gets_a_colour_bar():
    ok = _sweep(n_clock=8)
    fig = axis_figure(ok, "hbm_channels", title="t", colour_by="clock_hz")
    assert [a.get_ylabel() for a in fig.axes[1:]] == ["clock (MHz)"]   # the colour bar
    fig = axis_figure(ok, "clock_hz", title="t", colour_by="hbm_channels")
    assert len(fig.axes) == 1    # two values: a legend instead
    assert fig.axes[0].get_legend().get_title().get_text() == "HBM channels"


def test_one_design_pareto_front_says_so_and_keeps_the_others():
    ok = _sweep()
    ok.loc[0, ["decode_tokens_per_s", "tokens_per_j"]] = (1e4, 1e3)   # dominates the rest
    front = pareto(ok, "tokens_per_s,tokens_per_j")
    assert len(front) == 1
    fig = pareto_figure(ok, front, ["decode_tokens_per_s", "tokens_per_j"],
                        title="sweep s: llama2-7b", colour_by="hw")
    ax = fig.axes[0]
    assert "one-design Pareto front" in ax.get_title()
    notes = [t.get_text() for t in ax.texts]
    assert any(f"dominates the other {len(ok) - 1}" in t for t in notes)
    shown = sum(len(c.get_offsets()) for c in ax.collections)
    assert shown == len(ok) + 1          # every design, plus the front's ring


def test_roofline_one_roof_per_device_over_the_data():
    ok = _sweep()
    ok.loc[ok.hw == "flightllm-vhk158", "mem_bytes_per_s"] *= 3   # its own roofs
    fig = roofline_figure(ok, title="t")
    ax = fig.axes[0]
    devices = set(zip(ok.hw, ok.peak_ops_per_s, ok.mem_bytes_per_s, strict=True))
    assert len(ax.get_lines()) == len(devices) == 4
    lo, hi = ax.get_xlim()
    intensity = 13e9 / 3.6e9
    assert lo == pytest.approx(intensity / 2) and hi == pytest.approx(intensity * 2)
    # designs sit in their roof's colour
    roof_colours = [line.get_color() for line in ax.get_lines()]
    assert [tuple(c.get_facecolor()[0][:3]) for c in ax.collections] == [
        tuple(matplotlib.colors.to_rgb(c)) for c in roof_colours]


def test_roofline_merges_roofs_that_coincide_over_the_data():
    """Same bandwidth, compute peaks off the plot: one line naming every device on it."""
    ok = _sweep()
    fig = roofline_figure(ok, title="t")
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2         # 16 and 32 channels
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all("flightllm-u280, flightllm-vhk158" in t for t in texts)
    assert all("TOP/s (2 configurations)" in t for t in texts)


def test_compare_png_units_stack_and_legend():
    from reports.compare import Row, plot

    def row(hw, kind, fidelity, stack=None):
        return Row(hw=hw, kind=kind, fidelity=fidelity, prefill_ms=10.0,
                   decode_ms_per_token=8.0, decode_tokens_per_s=125.0, power_w=300.0,
                   tokens_per_j=0.4, price_usd=None, tokens_per_s_per_usd=None,
                   fits_memory=True, source="s", power_source="p", price_source="q",
                   stack=stack)

    rows = [row("hades", "hades", "cycle"), row("gpu-h100", "gpu", "calibrated", "graph")]
    fig = plot(rows, "t")
    _assert_units(fig)
    ylabels = [a.get_ylabel() for a in fig.axes if a.get_ylabel()]
    assert "prefill time (ms)" in ylabels and "decode time (ms/token)" in ylabels
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["hades (cycle)", "gpu-h100 (calibrated, graph)"]
    legend = next(a.get_legend() for a in fig.axes if a.get_legend() is not None)
    assert [t.get_text() for t in legend.get_texts()] == ["cycle", "calibrated"]


def test_roofline_with_many_roofs_colours_by_bandwidth():
    """16 distinct roofs (8 clocks x 2 bandwidths), all visible: two colours, two legend
    entries, every peak still drawn."""
    ok = _sweep(n_clock=8)
    ok["peak_ops_per_s"] = ok.clock_hz * 2e3       # 0.3-0.6 TOP/s: ridges inside the plot
    fig = roofline_figure(ok, title="t")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(texts) == 2 and all(t.endswith("(8 configurations)") for t in texts)
    assert len(ax.get_lines()) == 16
    assert len({line.get_color() for line in ax.get_lines()}) == 2
