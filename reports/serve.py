"""Serving report: a table per device, serve.md, serve.json and a KV-cache occupancy plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLUMNS", "kv_series", "plot_kv", "serve_devices", "speculation_line", "table_row",
           "write_serve"]

COLUMNS = ("device", "fidelity", "req/s", "out tok/s", "TTFT p50/p90/p99 ms",
           "TPOT p50/p90/p99 ms", "goodput req/s (SLO %)", "queue p50/p99 ms", "KV peak %",
           "J/request")


def _ms(d: dict[str, Any]) -> str:
    if d["p50"] is None:
        return "-"
    return "/".join(f"{d[k] * 1e3:.1f}" for k in ("p50", "p90", "p99"))


def table_row(m: dict[str, Any]) -> list[str]:
    e = m["energy_per_request_j"]
    q = m["queue_s"]
    return [m["hw"], f"{m['fidelity']} ({m['storage']})", f"{m['throughput_req_per_s']:.3f}",
            f"{m['throughput_tokens_per_s']:.1f}", _ms(m["ttft_s"]), _ms(m["tpot_s"]),
            f"{m['goodput_req_per_s']:.3f} ({m['slo_attainment'] * 100:.0f}%)",
            f"{q['p50'] * 1e3:.1f}/{q['p99'] * 1e3:.1f}",
            f"{m['kv_peak_fraction'] * 100:.1f}", "-" if e is None else f"{e:.1f}"]


def serve_devices(names: list[str], entry: Any, rate: str, num_requests: int,
                  requests: str = "configs/serving/sharegpt_like.toml",
                  slo: str = "ttft=500ms,tpot=50ms", seed: int = 0,
                  cycle: bool = True, speculation: Any = None) -> list[dict[str, Any]]:
    """Each device's serving metrics for Poisson arrivals at ``rate`` (the serve command's
    scheduler defaults, each device at its serving fidelity, or the roofline where that is
    cycle-level and ``cycle`` is False: ``--no-cycle``); ``arrivals`` names the stream.
    ``speculation``: a ``sim.serving.device.Speculation`` for every device."""
    from sim.serving.device import default_fidelity, serve_device
    from sim.serving.metrics import parse_slo
    from sim.serving.requests import check_lengths, load_lengths, parse_rate, poisson_requests
    from sim.serving.scheduler import SchedulerConfig
    from sim.spec import load_preset

    goals, per_s = parse_slo(slo), parse_rate(rate)
    reqs = poisson_requests(per_s, num_requests, *load_lengths(requests), seed)
    check_lengths(reqs, entry.name, entry.max_positions)
    cfg = SchedulerConfig()   # the serve command's defaults; KV budget from the device
    label = f"Poisson {rate} ({per_s:g} req/s), {num_requests} requests, SLO {slo}"
    out = []
    for n in names:
        spec = load_preset(n)
        fid = default_fidelity(spec.kind)
        fid = "roofline" if fid == "cycle" and not cycle else fid
        out.append({**serve_device(spec, entry, reqs, cfg, goals, fid,
                                   speculation=speculation).metrics,
                    "arrivals": label})
    return out


def kv_series(run, points: int = 400) -> dict[str, list[float]]:
    """KV-cache occupancy (fraction of the budget) at iteration ends, at most ``points``."""
    t = run.iter_start + run.iter_s
    idx = np.unique(np.linspace(0, len(t) - 1, min(points, len(t))).astype(int))
    return {"t_s": t[idx].round(6).tolist(),
            "used": (run.kv_used[idx] / run.kv_budget).round(5).tolist(),
            "reserved": (run.kv_reserved[idx] / run.kv_budget).round(5).tolist()}


def plot_kv(series: dict[str, dict[str, dict[str, list[float]]]], path: Path,
            title: str) -> Path:
    """One panel per arrival pattern, one line per device (solid: used, dashed: reserved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.6 * len(series) + 0.6),
                             squeeze=False)
    for ax, (label, devices) in zip(axes[:, 0], series.items(), strict=True):
        for hw, s in devices.items():
            line, = ax.plot(s["t_s"], np.array(s["used"]) * 100, label=f"{hw} used", lw=1)
            ax.plot(s["t_s"], np.array(s["reserved"]) * 100, ls="--", lw=0.8,
                    color=line.get_color(), label=f"{hw} reserved")
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("KV cache (% of budget)", fontsize=8)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def speculation_line(m: dict[str, Any]) -> str | None:
    """What a speculative serving run drew and where its time went (None: not speculative)."""
    s = m.get("speculation")
    if not s:
        return None
    busy = s["draft_s"] + s["verify_s"]
    gamma = f"up to {s['gamma']}, adaptive" if s.get("adaptive") else s["gamma"]
    return (f"{m['hw']}: speculation (draft {s['draft']}, gamma {gamma}): "
            f"{s['sequence_rounds']:,} sequence-rounds, {s['mean_gamma']:.2f} drafts proposed, "
            f"{s['mean_accepted']:.2f} accepted and {s['tokens_per_round']:.2f} tokens "
            f"emitted per round; drafting {s['draft_s']:.1f} s of {busy:.1f} s busy")


def write_serve(out: Path, devices: list[dict[str, Any]], series: dict[str, Any],
                setup: dict[str, Any], command: str) -> Path:
    """serve.md, serve.json and serve_kv.png under ``out``; returns the markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve.json").write_text(json.dumps({"setup": setup, "devices": devices,
                                                "kv_series": series}, indent=1))
    plot_kv(series, out / "serve_kv.png", f"{setup['model']}: KV-cache occupancy")
    lines = [f"# Serving {setup['model']}", "", f"`{command}`", "",
             "| arrivals | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    lines += [f"| {m.get('arrivals', '')} | " + " | ".join(table_row(m)) + " |"
              for m in devices]
    lines += [f"- {m['hw']}: {n}" for m in devices for n in m.get("notes", ())]
    lines += [f"- {line}" for m in devices if (line := speculation_line(m))]
    lines += ["", "Setup: " + ", ".join(f"{k} {v}" for k, v in setup.items()), "",
              "TTFT: arrival to the end of the iteration that runs the last prompt chunk. "
              "TPOT: (completion - first token) / (outputs - 1). Goodput: requests per second "
              "meeting every SLO. Energy: busy iterations only (idle power not counted).", "",
              "![KV-cache occupancy](serve_kv.png)", ""]
    path = out / "serve.md"
    path.write_text("\n".join(lines))
    return path
