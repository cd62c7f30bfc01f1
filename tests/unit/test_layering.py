"""sim/, mapping/, reports/ and the IR never import torch (checked with torch blocked)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
sys.modules['torch'] = None          # any 'import torch' now raises ImportError
sys.modules['transformers'] = None
import models.graph, models.workload, models.cache, models.zoo, models.request
import sim.spec, sim.roofline, sim.result, sim.units
import mapping.compression
import reports.demo
import llmcosim.cli
import pkgutil, importlib, sim
for m in pkgutil.walk_packages(sim.__path__, 'sim.'):
    importlib.import_module(m.name)
print('ok')
"""


def test_sim_mapping_reports_import_without_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
