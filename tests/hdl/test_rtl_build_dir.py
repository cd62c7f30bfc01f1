"""``rtl verify`` builds in the cache directory and says where, whatever the working directory
(issue 21: it used to build into the checkout's build/)."""

from __future__ import annotations

from llmcosim.cli import main
from verification.runner import ROOT, build_root


def test_rtl_verify_builds_in_the_cache_dir_and_prints_it(tmp_path, monkeypatch, capsys):
    cache, cwd = tmp_path / "cache", tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.setenv("LLMCOSIM_CACHE", str(cache))
    monkeypatch.chdir(cwd)
    before = (ROOT / "build").exists() and sorted((ROOT / "build").rglob("*"))
    assert build_root() == cache / "rtl"
    assert main(["rtl", "verify", "--block", "sfu", "--vectors", "4"]) == 0
    err = capsys.readouterr().err
    assert f"building in {cache / 'rtl' / 'icarus'}" in err
    assert any((cache / "rtl" / "icarus").iterdir())
    assert not any(cwd.iterdir())                                   # nothing where it ran
    assert ((ROOT / "build").exists() and sorted((ROOT / "build").rglob("*"))) == before
