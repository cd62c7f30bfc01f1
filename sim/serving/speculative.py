"""Speculative decoding while serving: chain drafts, one verify pass, per-sequence acceptance.

Continuous batching with speculative decoding as vLLM runs it (draft model, chain of γ
tokens; Leviathan et al., ICML 2023): in an iteration with ``B`` decoding sequences,

1. **draft**: γ draft decode steps at batch B, each sequence one token further; the draft
   model also prefills the iteration's prompt chunks, in its first step. Cost: the draft
   model's own pass table (``PassTable.iteration`` of the draft at context c + j);
2. **verify**: one target pass over the B·(γ+1) positions (each sequence's last token and
   its γ drafts) plus the prompt chunks. Its dense ops see T = B·(γ+1) + ΣC tokens (the
   target table's dense curve, as for plain decodes); its attention is a **verify grid**:
   the attention ops of traced verify passes of γ+1 tokens at batch b and context c (each
   sequence's γ+1 queries read its cache once: neither B·(γ+1) decodes nor a prefill share);
3. **acceptance**: each sequence accepts A leading drafts, drawn with a seeded generator
   from ``--alpha`` (``mapping.acceptance``), and emits A + 1 tokens (the accepted drafts and
   the corrected or bonus token), at most what it still has to generate. Rollback of a
   chain is a pointer reset: no cost. The KV cache keeps 1 + A of the γ+1 rows written.

Admission reserves γ extra KV rows per request (the verify writes γ+1 rows before
rollback), and memory holds the draft's weights and KV cache too.

Drafts run before the verify: time-multiplexed on the device, or on HADES at cycle level with
``draft_engine = "separate"`` on that engine (``simulate_on_draft_engine`` of
``sim.hades.simulate``, chosen by ``sim.serving.device``). Drafting ahead during the verify,
which ``simulate --draft`` models (``sim.hades.engine``), is not modelled here. Devices whose
tables hold whole separate passes (FlightLLM at cycle level) cannot put drafts and
prompts in one verify pass: they serve speculation at the roofline.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mapping.acceptance import Acceptance
from sim.serving.passes import PassTable, _decode_grid

__all__ = ["SpecServing", "SpecStats", "verify_table"]


@dataclass
class SpecStats:
    """What the speculation did in one serving run."""

    verify_passes: int = 0        # sequence-rounds: one per decoding sequence per iteration
    accepted: int = 0             # drafts accepted
    emitted: int = 0              # tokens emitted by those rounds
    drafted: int = 0              # drafts proposed (sum over sequence-rounds of their k)
    draft_s: float = 0.0          # iteration time spent drafting
    verify_s: float = 0.0         # the rest: the verify pass and the prompt chunks in it

    def summary(self) -> dict[str, float]:
        n = max(self.verify_passes, 1)
        return {"sequence_rounds": self.verify_passes, "mean_accepted": self.accepted / n,
                "tokens_per_round": self.emitted / n, "mean_gamma": self.drafted / n,
                "draft_s": self.draft_s, "verify_s": self.verify_s}


@dataclass
class SpecServing:
    """The speculation of one serving run: γ, acceptance, the draft's and the verify's tables.

    ``adaptive``: the verify tables of every draft length k = 1..γ, and the target's own table
    (k = 0). The draft length is then chosen per iteration (``choose``) after the plain
    schedule is planned: drafts use only the budget the decodes and prompt chunks leave, so
    prompts are never crowded out, and of the lengths that fit, the one with the most expected
    tokens per second of the iteration (SmartSpec's goodput rule, Liu et al. 2024, with the
    known acceptance) wins.
    """

    gamma: int
    acceptance: Acceptance
    draft: str
    draft_table: PassTable        # the draft model's pass table (same device and fidelity)
    verify: PassTable             # target table whose decode grid is the verify grid
    seed: int = 0
    stats: SpecStats = field(default_factory=SpecStats)
    adaptive: dict[int, PassTable] | None = None   # k -> verify table (k = 0: the target's)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.k = self.gamma

    @property
    def rows(self) -> int:
        """Budget tokens a decoding sequence takes when the iteration is planned."""
        return 1 if self.adaptive is not None else self.gamma + 1

    def _drafts(self, n_decode: int, ctx_sum: float, chunks: list[tuple[int, int]],
                steps: int) -> list[tuple[float, float]]:
        """(s, J) of the first ``steps`` draft steps (step 0 also prefills the chunks)."""
        out = []
        for j in range(steps):
            out.append(self.draft_table.iteration(n_decode, ctx_sum + n_decode * j,
                                                  chunks if j == 0 else []))
        return out

    def iteration(self, n_decode: int, ctx_sum: float, chunks: list[tuple[int, int]],
                  spare: int = 0) -> tuple[float, float]:
        """(seconds, joules) of one iteration: the drafts, then the verify pass (``spare``:
        budget tokens the plan left, which adaptive drafts may use)."""
        if self.adaptive is not None:
            return self._adaptive(n_decode, ctx_sum, chunks, spare)
        steps = self.gamma if n_decode else 1   # no decoders: the draft prefills only
        drafts = self._drafts(n_decode, ctx_sum, chunks, steps) if n_decode or chunks else []
        ds, dj = sum(d[0] for d in drafts), sum(d[1] for d in drafts)
        vs, vj = self.verify.iteration(n_decode, ctx_sum, chunks, rows=self.gamma + 1)
        return self._account(ds, dj, vs, vj)

    def _account(self, ds: float, dj: float, vs: float, vj: float) -> tuple[float, float]:
        self.stats.draft_s += ds
        self.stats.verify_s += vs
        return ds + vs, dj + vj

    def _adaptive(self, n_decode: int, ctx_sum: float, chunks: list[tuple[int, int]],
                  spare: int) -> tuple[float, float]:
        assert self.adaptive is not None
        top = min(self.gamma, spare // n_decode) if n_decode else 0
        drafts = self._drafts(n_decode, ctx_sum, chunks, max(top, 1 if chunks else 0))
        # k = 0: the draft still prefills the chunks (step 0 without decoders)
        pre = self.draft_table.iteration(0, 0.0, chunks) if chunks else (0.0, 0.0)
        best = None
        for k in range(top + 1):
            ds = sum(d[0] for d in drafts[:k]) if k else pre[0]
            dj = sum(d[1] for d in drafts[:k]) if k else pre[1]
            vs, vj = self.adaptive[k].iteration(n_decode, ctx_sum, chunks, rows=k + 1)
            rate = n_decode * self.acceptance.mean_tokens(k) / max(ds + vs, 1e-30)
            if best is None or rate > best[0] * (1 + 1e-12):
                best = (rate, k, ds, dj, vs, vj)
        assert best is not None
        self.k = best[1]
        return self._account(*best[2:])

    def emitted(self, remaining: int) -> int:
        """Tokens one decoding sequence emits this round (1 + accepted drafts, capped)."""
        a = self.acceptance.draw(self.rng, self.k) if self.k else 0
        k = min(a + 1, remaining)
        self.stats.verify_passes += 1
        self.stats.accepted += min(a, k)
        self.stats.emitted += k
        self.stats.drafted += self.k
        return k

    def reset(self) -> None:
        """A fresh run: the same draws again, zeroed counts."""
        self.rng = np.random.default_rng(self.seed)
        self.stats = SpecStats()
        self.k = self.gamma


def verify_table(table: PassTable, spec, fidelity: str, verify, gamma: int,
                 graph_pass=None) -> PassTable:
    """``table`` with its decode grid replaced by the attention ops of verify passes of
    γ+1 tokens (``verify(b, c)``: the batch-b verify graph at context c) on the same grid.
    """
    if table.separate:
        raise ValueError("a verify table needs a shared-dense pass table")
    gp = graph_pass or (lambda g: g)
    dec, _, energy = _decode_grid(spec, fidelity, verify, gp, gp, False, list(table.batches),
                                  list(table.contexts))
    return replace(table, dec_attn_s=dec[:, :, 0], dec_attn_j=dec[:, :, 1],
                   has_energy=table.has_energy and energy)
