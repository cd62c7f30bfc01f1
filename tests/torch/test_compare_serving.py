"""``compare --rate``: serving metrics as columns next to the per-request comparison."""

from __future__ import annotations

import json

from llmcosim.cli import main


def test_compare_adds_serving_columns(tmp_path, capsys):
    argv = ["compare", "--model", "llama-68m", "--hw", "hades,gpu-a100", "--no-cycle",
            "--prefill", "16", "--decode", "4", "--rate", "5/s", "--num-requests", "20",
            "--out", str(tmp_path)]
    assert main([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    serving = {m["hw"]: m for m in d["serving"]}
    assert set(serving) == {"hades", "gpu-a100"}
    for m in serving.values():
        assert m["goodput_req_per_s"] <= m["throughput_req_per_s"]
        assert m["ttft_s"]["p50"] <= m["ttft_s"]["p99"]
        assert m["arrivals"].startswith("Poisson 5/s (5 req/s), 20 requests")
    md = (tmp_path / "compare.md").read_text()
    assert "## Serving: Poisson 5/s" in md and "| gpu-a100 |" in md.split("## Serving")[1]
    assert json.loads((tmp_path / "compare.json").read_text())["serving"][0]["hw"] == "hades"


def test_compare_rate_errors_name_the_flag(capsys):
    assert main(["compare", "--model", "llama-68m", "--hw", "hades", "--no-cycle",
                 "--rate", "0/s", "--json"]) == 2
    assert "rate" in capsys.readouterr().err


def test_flightllm_serves_at_cycle_level_unless_no_cycle(tmp_path, capsys):
    """FlightLLM's serving rows come from its cycle-level simulator (whole passes, batch
    bounded by the B buffer); ``--no-cycle`` gives the roofline rows."""
    argv = ["compare", "--model", "llama-68m", "--hw", "flightllm-u280", "--prefill", "16",
            "--decode", "4", "--rate", "2/s", "--num-requests", "20", "--json",
            "--out", str(tmp_path)]
    got = {}
    for extra in ([], ["--no-cycle"]):
        assert main([*argv, *extra]) == 0
        (m,) = json.loads(capsys.readouterr().out)["serving"]
        got[bool(extra)] = m
    assert (got[False]["fidelity"], got[False]["storage"]) == ("cycle", "artifact setting")
    assert (got[True]["fidelity"], got[True]["storage"]) == ("roofline", "W4 KV8")
    # llama-68m's widest linear input is 3,072 (down_proj): 131,072 // 3,072 = 42 sequences
    assert got[False]["max_batch"] == 131_072 // 3_072 and "B buffer" in got[False]["notes"][0]
    assert got[True]["max_batch"] == 64 and "notes" not in got[True]
