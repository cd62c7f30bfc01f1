"""Sweep specs: parsing, validation messages, sampling, constraints, content hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from models.errors import UserError
from sweeps.expr import parse_expr
from sweeps.sampling import Axis, grid, latin_hypercube, random_samples
from sweeps.spec import parse_sweep

BASE = """
[hardware]
preset = "flightllm-u280"
[workload]
model = "llama2-7b"
prefill = 16
decode = 4
"""


def test_grid_expands_every_combination_and_canonicalises_units():
    s = parse_sweep(BASE + """
[compression]
weight_bits = [4, 8]
kv_bits = [8, "none"]
""" + "", "t")
    pts = s.points()
    assert len(pts) == 4
    assert {(p.weight_bits, p.kv_bits) for p in pts} == {(4, 8), (4, None), (8, 8), (8, None)}
    a = parse_sweep(BASE.replace('preset = "flightllm-u280"',
                                 'preset = "flightllm-u280"\nclock_hz = "250 MHz"'))
    b = parse_sweep(BASE.replace('preset = "flightllm-u280"',
                                 'preset = "flightllm-u280"\nclock_hz = 2.5e8'))
    assert a.points()[0].key == b.points()[0].key
    assert a.points()[0].key != s.points()[0].key


def test_range_axis_grid_steps_and_integer_fields():
    s = parse_sweep(BASE.replace('preset = "flightllm-u280"', """preset = "flightllm-u280"
clock_hz = { min = "100 MHz", max = "300 MHz", steps = 3 }
hbm_channels = { min = 8, max = 32, steps = 4, scale = "log" }"""))
    pts = s.points()
    assert sorted({dict(p.overrides)["clock_hz"] for p in pts}) == [1e8, 2e8, 3e8]
    chans = sorted({dict(p.overrides)["hbm_channels"] for p in pts})
    assert chans == [8, 13, 20, 32] and all(isinstance(c, int) for c in chans)


def test_duplicate_points_are_computed_once():
    s = parse_sweep(BASE + "[compression]\nweight_bits = [4, 4, 8]\n")
    assert len(s.points()) == 2


@pytest.mark.parametrize("snippet, message", [
    ("[sweep]\nsampling = 'sobol'\n", "allowed: grid, random, lhs, list"),
    ("[sweep]\nfoo = 1\n", "unknown key sweep.foo; allowed: name"),
    ("[compression]\nweight_bits = [5]\n", "allowed: 2, 3, 4, 8, 16"),
    ("[compression]\nnm = '2:4'\n", "allowed: weight_bits, kv_bits, sparsity, keep"),
    ("[compression]\nsparsity = '2:4'\n", "compression.sparsity: .*'2:4' does not exist"),
    ("[compression]\nkeep = 0.05\n", "compression.keep = 0.05: expected a kept fraction"),
    ("[speculation]\nbeta = [2, 4]\n", "allowed: gamma, alpha, tree, draft"),
    ("[speculation]\ngamma = [0, 4]\n", "speculation.gamma = 0: expected a whole number"),
    ("[speculation]\nalpha = 1.5\n", "speculation.alpha = 1.5: expected an acceptance"),
    ("[speculation]\nalpha = '0.9,x'\n", "speculation.alpha = '0.9,x'"),
    ("[speculation]\ntree = 'no/such.toml'\n", "tree file 'no/such.toml' does not exist"),
    ("[speculation]\ntree = '-1,a'\n", "expected \"chain\", a .toml tree file"),
    ("[sweep]\nsampling = 'random'\n", "sweep.samples must be"),
    ("[sweep]\nconstraints = ['dsp_count < 1 and bogus > 2']\n", "unknown name 'bogus'"),
    ("[sweep]\nconstraints = ['__import__(\"os\")']\n", "may be called"),
])
def test_validation_errors_name_key_and_allowed_values(snippet, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        parse_sweep(BASE + snippet, "s.toml")


def test_unknown_hardware_field_lists_allowed_fields():
    with pytest.raises(UserError, match=r"hardware.sram_bytes.*clock_hz"):
        parse_sweep(BASE.replace('preset = "flightllm-u280"',
                                 'preset = "flightllm-u280"\nsram_bytes = [1, 2]'))


def test_range_without_steps_needs_random_sampling():
    text = BASE.replace('preset = "flightllm-u280"',
                        'preset = "flightllm-u280"\nclock_hz = {min = 1e8, max = 2e8}')
    with pytest.raises(UserError, match="give steps for a grid"):
        parse_sweep(text)
    s = parse_sweep(text + "[sweep]\nsampling = 'lhs'\nsamples = 7\nseed = 3\n")
    assert len(s.points()) == 7


def test_list_sampling_takes_explicit_points():
    s = parse_sweep(BASE + """[sweep]
sampling = "list"
[[points]]
preset = "gpu-a100"
[[points]]
weight_bits = 4
""")
    pts = s.points()
    assert [(p.hw, p.weight_bits) for p in pts] == [("gpu-a100", None), ("flightllm-u280", 4)]


def test_random_and_lhs_are_seeded_and_lhs_is_stratified():
    axes = [Axis("x", lo=0.0, hi=1.0), Axis("y", lo=1.0, hi=100.0, log=True),
            Axis("z", values=("a", "b"))]
    assert random_samples(axes, 20, 5) == random_samples(axes, 20, 5)
    assert random_samples(axes, 20, 5) != random_samples(axes, 20, 6)
    pts = latin_hypercube(axes, 10, 1)
    assert pts == latin_hypercube(axes, 10, 1)
    strata = sorted(int(p["x"] * 10 - 1e-9) for p in pts)    # one sample per tenth of x
    assert strata == list(range(10))
    logs = sorted(int(np.log10(p["y"]) / 2 * 10 - 1e-9) for p in pts)
    assert logs == list(range(10))
    assert sorted(p["z"] for p in pts) == ["a"] * 5 + ["b"] * 5
    assert len(grid(axes[2:])) == 2


def test_expressions_evaluate_and_report_inapplicable_names():
    e = parse_expr("cores * mm_macs_per_cycle <= max(dsp_count, 1) * 2", "c")
    assert e.holds({"cores": 3, "mm_macs_per_cycle": 4096, "dsp_count": 6345}) is True
    assert e.holds({"cores": 4, "mm_macs_per_cycle": 4096, "dsp_count": 6345}) is False
    assert e.holds({"cores": 4}) is None   # a GPU point has no DSPs: the rule does not apply
    with pytest.raises(UserError, match="Attribute is not allowed"):
        parse_expr("x.__class__", "c")


ROOT = Path(__file__).resolve().parents[2]
FILES = """
[hardware]
preset = "hw/u280.toml"
[workload]
model = "toy.workload.json"
prefill = 16
decode = 8
[compression]
sparsity = "int8.toml"
"""


def _spec_folder(folder: Path) -> Path:
    """A sweep file with a preset file, a workload and a sparsity config beside it."""
    from models.graph import Phase
    from models.workload import Workload
    from sweeps.workloads import save_workload_file
    from tests.unit.graphs import decoder_like

    (folder / "hw").mkdir(parents=True)
    shutil.copy(ROOT / "configs/hw/flightllm-u280.toml", folder / "hw/u280.toml")
    shutil.copy(ROOT / "configs/sparsity/dense_int8.toml", folder / "int8.toml")
    w = Workload("toy", 1, 16, 8, decoder_like(2, 256, 0, Phase.PREFILL),
                 decoder_like(2, 256, 16), decoder_like(2, 256, 23))
    save_workload_file(w, folder / "toy.workload.json")
    (folder / "spec.toml").write_text(FILES)
    return folder / "spec.toml"


def test_relative_paths_resolve_against_the_spec_folder_from_any_cwd(tmp_path, monkeypatch):
    from sweeps import Store, run_sweep
    from sweeps.spec import load_sweep

    spec_file = _spec_folder(tmp_path / "specs")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    spec = load_sweep("../specs/spec.toml")
    (p,) = spec.points()
    here = (tmp_path / "specs").resolve()
    assert (p.hw, p.model, p.sparsity) == (str(here / "hw/u280.toml"),
                                          str(here / "toy.workload.json"), str(here / "int8.toml"))
    assert p.model_digest and p.sparsity_digest   # the files were read, not just named
    s = run_sweep(spec, db=tmp_path / "r.db", workers=1, progress=False, cache=False)
    with Store(tmp_path / "r.db", readonly=True) as st:
        rows = st.rows()
    assert s.counts == {"ok": 1} and rows[0]["decode_tokens_per_s"] > 0
    # beside the spec wins over the working directory (a different file of the same name)
    (tmp_path / "elsewhere/int8.toml").write_text((ROOT / "configs/sparsity/flightllm_qk70.toml")
                                                  .read_text())
    assert load_sweep(spec_file).points()[0].sparsity == str(here / "int8.toml")


def test_missing_relative_file_names_spec_key_and_paths_tried(tmp_path, monkeypatch):
    from sweeps.spec import load_sweep

    spec_file = _spec_folder(tmp_path / "specs")
    (tmp_path / "specs/int8.toml").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as e:
        load_sweep("specs/spec.toml")
    msg = str(e.value)
    assert msg.startswith("specs/spec.toml: compression.sparsity: ")
    for tried in (spec_file.parent / "int8.toml", tmp_path / "int8.toml",
                  ROOT / "configs/sparsity/int8.toml", ROOT / "int8.toml"):
        assert str(tried) in msg


def test_committed_specs_keep_their_paths_from_the_root_and_run_from_elsewhere(tmp_path,
                                                                              monkeypatch):
    from sweeps.spec import load_sweep

    monkeypatch.chdir(ROOT)   # as written: the points (and their hashes) of older releases
    spec = load_sweep("configs/sweeps/u280_sparsity.toml")
    assert {p.sparsity for p in spec.points()} == {"configs/sparsity/flightllm_qk70.toml"}
    digests = {p.sparsity_digest for p in spec.points()}
    assert len(digests) == 1 and "" not in digests
    monkeypatch.chdir(tmp_path)   # elsewhere: the repository-root fallback finds the file
    moved = load_sweep(ROOT / "configs/sweeps/u280_sparsity.toml").points()
    assert {p.sparsity for p in moved} == {str(ROOT / "configs/sparsity/flightllm_qk70.toml")}
    assert {p.sparsity_digest for p in moved} == digests


def test_model_folder_tree_and_requests_beside_the_spec(tmp_path, monkeypatch):
    from sweeps.spec import load_sweep

    (tmp_path / "specs/my-model").mkdir(parents=True)
    (tmp_path / "specs/my-model/config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "specs/t.toml").write_text("parents = [-1, 0, 0]\n")
    shutil.copy(ROOT / "configs/serving/sharegpt_like.toml", tmp_path / "specs/len.toml")
    mine = BASE.replace('"llama2-7b"', '"my-model"')
    (tmp_path / "specs/spec.toml").write_text(mine + '[speculation]\ntree = "t.toml"\n')
    # serving speculates with chains only: the requests file in a sweep of its own
    (tmp_path / "specs/serve.toml").write_text(mine + '[serving]\nrate = 1\n'
                                               'requests = "len.toml"\n')
    monkeypatch.chdir(tmp_path)
    (p,) = load_sweep("specs/spec.toml").points()
    (q,) = load_sweep("specs/serve.toml").points()
    here = (tmp_path / "specs").resolve()
    assert (p.model, p.tree, q.model, q.requests) == (
        str(here / "my-model"), str(here / "t.toml"), str(here / "my-model"),
        str(here / "len.toml"))
    assert p.tree_parents == (-1, 0, 0) and p.model_digest and q.requests_digest
    # a bare model name found nowhere is left to the zoo's error (which lists the zoo)
    (tmp_path / "specs/my-model/config.json").unlink()
    (tmp_path / "specs/my-model").rmdir()
    assert load_sweep("specs/spec.toml").points()[0].model == "my-model"
