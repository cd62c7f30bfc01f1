"""Program builder: per-core instruction lists and FIFO-consistent wait/release tokens.

``dep(p, c)`` makes instruction ``c`` wait for ``p`` (both on one core). Tokens of a queue
pair are matched in program order, so the builder keeps, per (src, dst), the last producer that
released to dst: an older producer is already implied (queues are in order and LD retires in
order), and a consumer that already waits on src moves that token to the newer producer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mapping.flightllm.isa import INSTR, Program, Queue

__all__ = ["Arch", "Builder"]


@dataclass(frozen=True)
class Arch:
    """What code generation needs of the hardware (built by the simulator from its spec)."""

    cores: int = 4                       # artifact SLR_NUM (VHK158)
    channels_per_core: int = 8           # 32 pseudo-channels / 4 cores
    weight_channels: int = 8             # artifact A_BUFFER_HBM_CHANNEL_NUM
    a_buffer_bytes: int = 4096 * 256     # artifact A 4096 deep x 256 B
    b_buffer_bytes: int = 4096 * 32      # artifact B 4096 deep x 32 B
    global_buffer_bytes: int = 512 * 256  # artifact global 512 deep x 256 B
    meta_buffer_bytes: int = 4096 * 16   # artifact meta 4096 deep x 16 B
    fsb_buffer_bytes: int = 4096 * 1     # artifact FSB 4096 deep x 1 B
    mv_tile_cols: int = 512              # artifact MV_START_N_NUM
    mm_tile_rows: int = 128              # artifact MM_START_M_NUM
    mm_tile_cols: int = 16               # artifact MM_START_N_NUM
    # token rows one MV instruction computes from one A-buffer read of its tile (a design
    # knob, ``FlightLLMSpec.mv_rows``; the artifact's MV_PARALLEL_M is 1)
    mv_rows: int = 1
    on_chip_decode: bool = True          # FlightLLM always-on-chip decode
    fuse: bool = True                    # linear+SiLU/eltwise/RoPE, attention+softmax
    # decode (MV) sparse indices: True = next to each kept weight in the A-buffer stream over
    # the weight channels (the one path wide enough for the MV, see docs/flightllm.md);
    # False = through the meta buffer from its one HBM channel (artifact
    # META_BUFFER_HBM_CHANNEL_NUM 1), the meta buffer's 16 B/cycle read width not applied
    index_in_weights: bool = True


@dataclass
class _Core:
    rows: list[tuple] = field(default_factory=list)
    qidx: list[int] = field(default_factory=list)     # position of each instr in its queue
    qlen: list[int] = field(default_factory=lambda: [0] * len(Queue))
    last: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # -> (p, c)


_NAMES = INSTR.names
_IX = {n: i for i, n in enumerate(_NAMES)}
_TEMPLATE = [0] * len(_NAMES)
_TEMPLATE[_IX["node"]], _TEMPLATE[_IX["n"]] = -1, 16
_W, _R = _IX["wait"], _IX["release"]


class Builder:
    """Collects instructions per core; ``emit`` returns the instruction's index on its core."""

    def __init__(self, cores: int):
        self._cores = [_Core() for _ in range(cores)]
        self.nodes: list[str] = []
        self._node_ix: dict[str, int] = {}

    def node(self, name: str) -> int:
        if name not in self._node_ix:
            self._node_ix[name] = len(self.nodes)
            self.nodes.append(name)
        return self._node_ix[name]

    def emit(self, core: int, queue: Queue, *, after: tuple[int | None, ...] = (),
             **fields: int) -> int:
        c = self._cores[core]
        row = _TEMPLATE.copy()
        row[0] = int(queue)
        for k, v in fields.items():
            row[_IX[k]] = v
        c.rows.append(row)
        c.qidx.append(c.qlen[queue])
        c.qlen[queue] += 1
        i = len(c.rows) - 1
        for p in after:
            if p is not None:
                self.dep(core, p, i)
        return i

    def like(self, core: int, i: int, **fields: int) -> int:
        """A copy of instruction ``i`` (same queue, no tokens) with ``fields`` changed.

        For the fan-out of one transfer over several channels: the copies follow ``i`` in the
        in-order queue, so its tokens already order them (what ``dep`` would conclude too).
        """
        c = self._cores[core]
        row = c.rows[i].copy()
        row[_W] = row[_R] = 0
        for k, v in fields.items():
            row[_IX[k]] = v
        c.rows.append(row)
        q = row[0]
        c.qidx.append(c.qlen[q])
        c.qlen[q] += 1
        return len(c.rows) - 1

    def dep(self, core: int, p: int, c: int) -> None:
        """Instruction ``c`` starts only after ``p`` finished (same core)."""
        k = self._cores[core]
        src, dst = k.rows[p][0], k.rows[c][0]
        if src == dst:
            return  # in-order queue
        w, r = _W, _R
        last = k.last.get((src, dst))
        if last is not None and k.qidx[p] <= k.qidx[last[0]]:
            return  # an older producer: implied by the token already matched
        if last is not None and last[1] == c:
            k.rows[last[0]][r] &= ~(1 << dst)  # move this consumer's token to the newer p
        k.rows[p][r] |= 1 << dst
        k.rows[c][w] |= 1 << src
        k.last[(src, dst)] = (p, c)

    def program(self, meta: dict[str, object]) -> Program:
        arrs = []
        for c in self._cores:
            m = np.array(c.rows, dtype=np.int64).reshape(len(c.rows), len(_NAMES))
            arr = np.zeros(len(c.rows), dtype=INSTR)
            for j, name in enumerate(_NAMES):
                arr[name] = m[:, j]
            arrs.append(arr)
        return Program(arrs, list(self.nodes), dict(meta))
