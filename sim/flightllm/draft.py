"""Where FlightLLM's draft model runs: its weights in HBM or URAM, on the cores or beside them.

Two spec knobs (``FlightLLMSpec.draft_weights``, ``draft_engine``; docs/flightllm.md):

- ``draft_weights = "uram"``: the draft's linear weights (with their N:M indices, FSB bytes and
  biases, i.e. everything the weight LDs of its program load) are held in the URAM288s the
  design leaves free: the device's ``fpga_uram288_count`` minus the buffers' URAM that
  ``sim.flightllm.resources`` counts. Its program keeps every instruction, but a weight LD
  becomes a one-cycle on-chip access (:func:`weights_on_chip`): the MPE reads the tile from
  URAM at the A buffer's rate, which the MV's own cycles already charge (``mv_cycles`` is
  bounded by the A-buffer read of the tile), and no HBM byte moves. The embedding table stays
  in HBM (one row per token, an LD to the global buffer).
- ``draft_engine = "separate"``: a one-core FlightLLM of ``draft_macs_per_cycle`` MV MACs beside
  the cores (:func:`draft_engine_spec`), with the HBM pseudo-channels the cores leave unowned
  (``hbm_channels mod cores``: the cores' programs never address them), so its loads do not
  contend with the verify's. As HADES's separate engine, it pre-drafts the next chain while the
  cores verify (``sim.flightllm.speculate``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mapping.flightllm.isa import LD_TARGETS, Program, Queue
from models.errors import UserError
from models.graph import Graph, OpKind
from sim.spec import FlightLLMSpec

__all__ = ["URAM288_BYTES", "draft_engine_spec", "draft_uram288", "free_uram288",
           "check_draft_fits", "onchip_weight_bytes", "weights_on_chip"]

# UG573: a URAM288 is 4K x 72 bits; as resources.py counts it, the 72 bits hold 9 data bytes
URAM288_BYTES = 4096 * 72 // 8
# decode/verify (MV) programs load a linear's tile into A, its indices/FSB/bias into their own
# buffers (codegen ``weight_tile``); prefill (MM, weights into B) is not rewritten
_WEIGHT_TARGETS = (LD_TARGETS["A"], LD_TARGETS["meta"], LD_TARGETS["FSB"], LD_TARGETS["bias"])


def onchip_weight_bytes(g: Graph) -> int:
    """Bytes the draft holds on chip with ``draft_weights = "uram"``: every linear's weights
    as compressed (kept weights + indices + FSB + bias, ``apply_compression``)."""
    return sum(n.weight_bytes for n in g.nodes if n.kind is OpKind.LINEAR)


def draft_uram288(nbytes: int) -> int:
    """URAM288s that hold ``nbytes`` (whole 4K x 72 primitives)."""
    return -(-nbytes // URAM288_BYTES)


def free_uram288(spec: FlightLLMSpec) -> int:
    """URAM288s the design leaves free: the device's minus the buffers mapped to URAM
    (``resources.buffer_banks``: the A buffers, and a separate draft engine's,
    ``resources.draft_buffers``). 0 when the device count is not given."""
    from sim.flightllm.resources import buffer_banks, draft_buffers

    used = sum(b.total for b in buffer_banks(spec) + draft_buffers(spec)
               if b.memory == "uram288")
    return max(spec.fpga_uram288_count - used, 0)


def check_draft_fits(spec: FlightLLMSpec, g: Graph, draft: str) -> int:
    """UserError unless ``draft`` (its compressed decode graph ``g``) fits the free URAM;
    returns the URAM288s it takes."""
    nbytes = onchip_weight_bytes(g)
    need, free = draft_uram288(nbytes), free_uram288(spec)
    if need > free:
        raise UserError(
            f"draft_weights = \"uram\" on {spec.name}: the draft {draft}'s weights take "
            f"{nbytes / 1e6:.2f} MB = {need} URAM288 ({URAM288_BYTES} B each), but the design "
            f"leaves {free} free ({spec.fpga_uram288_count} on the device minus "
            f"{spec.fpga_uram288_count - free} for its buffers) = {free * URAM288_BYTES / 1e6:.2f}"
            " MB; use draft_weights = \"hbm\", a smaller draft, or compress it more")
    return need


def weights_on_chip(prog: Program, g: Graph) -> np.ndarray:
    """Turn the weight LDs of ``prog`` (LDs of a linear's tile: weights, indices, FSB, bias)
    into one-cycle on-chip accesses (its ``cycles`` must be filled); returns, per core, the
    mask of those LDs (their bytes do not come from HBM)."""
    linear = {i for i, name in enumerate(prog.nodes)
              if name in {n.name for n in g.nodes if n.kind is OpKind.LINEAR}}
    ids = np.fromiter(linear, np.int64, len(linear))
    masks = []
    for arr in prog.cores:
        m = (arr["queue"] == Queue.LD) & np.isin(arr["node"], ids) & \
            np.isin(arr["op"], _WEIGHT_TARGETS)
        arr["cycles"][m] = 1
        masks.append(m)
    return masks


def draft_engine_spec(spec: FlightLLMSpec) -> FlightLLMSpec:
    """The separate draft engine as a one-core FlightLLM: ``draft_macs_per_cycle`` MACs (MV and
    MM), a core's buffers, the HBM pseudo-channels no core owns. UserError if there are none."""
    spare = spec.hbm_channels - spec.cores * (spec.hbm_channels // spec.cores)
    if spare < 1:
        raise UserError(
            f"draft_engine = \"separate\" on {spec.name}: its {spec.cores} cores own all "
            f"{spec.hbm_channels} HBM pseudo-channels ({spec.hbm_channels // spec.cores} each), "
            "none is left for the draft engine's weights and KV cache; use draft_engine = "
            "\"shared\" or a preset whose channel count is not a multiple of its cores")
    return dataclasses.replace(
        spec, name=f"{spec.name} draft engine", cores=1, dsp_count=0,
        mv_macs_per_cycle=spec.draft_macs_per_cycle, mm_macs_per_cycle=spec.draft_macs_per_cycle,
        hbm_channels=spare, hbm_bytes_per_s=spare * spec.hbm_channel_bytes_per_s,
        weight_channels=min(spec.weight_channels, spare), draft_engine="shared")
