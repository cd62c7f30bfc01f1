"""A speculative workload: target prefill/decode/verify graphs + draft graphs + the schedule.

Verify and draft decode passes are affine in the context, so two traces each (at the prompt
length and at the end of generation) give every round exactly (``sim.hades.affine``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from mapping.speculation import SpecConfig, check_vocab
from models.errors import UserError
from models.graph import Graph, Phase
from models.workload import Workload
from models.zoo import ModelEntry, get_model

__all__ = ["SpeculativeWorkload", "build_speculative_workload"]


@dataclass(frozen=True)
class SpeculativeWorkload(Workload):
    """A :class:`Workload` (the non-speculative baseline) plus what speculation needs."""

    draft: str = ""
    config: SpecConfig | None = None
    draft_prefill: Graph | None = None
    draft_first: Graph | None = None     # draft decode at the prompt length
    draft_last: Graph | None = None      # draft decode at the end of generation
    verify_first: Graph | None = None    # target verify over config.verify_tokens positions
    verify_last: Graph | None = None
    vocab: int = 0

    def map(self, fn: Callable[[Graph], Graph]) -> SpeculativeWorkload:
        base = Workload.map(self, fn)
        def f(g: Graph | None) -> Graph | None:
            return fn(g) if g is not None else None
        # the base's passes and raw traces too: ``decode_at`` interpolates the raw traces
        # (a pass may round counts, e.g. scaled activation bytes, so they need not be affine)
        return replace(self, prefill=base.prefill, decode_first=base.decode_first,
                       decode_last=base.decode_last, passes=base.passes,
                       traced_first=base.traced_first, traced_last=base.traced_last,
                       draft_prefill=f(self.draft_prefill),
                       draft_first=f(self.draft_first), draft_last=f(self.draft_last),
                       verify_first=f(self.verify_first), verify_last=f(self.verify_last))


def _vocab(entry: ModelEntry) -> int:
    return int(entry.config.get("vocab_size", 0))


def build_speculative_workload(target: str | ModelEntry, draft: str | ModelEntry, *,
                               prefill: int, decode: int, config: SpecConfig, batch: int = 1,
                               dtype: str = "float16", use_cache: bool = True
                               ) -> SpeculativeWorkload:
    """Trace (or load) every graph the speculation schedule needs; UserError on bad input."""
    from models.cache import get_graph, get_workload

    t = get_model(target) if isinstance(target, str) else target
    d = get_model(draft) if isinstance(draft, str) else draft
    check_vocab(t.name, _vocab(t), d.name, _vocab(d))
    if prefill < 1 or decode < 1:
        raise UserError("speculative decoding needs --prefill >= 1 and --decode >= 1")
    n = config.verify_tokens
    end = prefill + decode + config.draft_steps  # drafts may run past the last emitted token
    for e in (t, d):
        if e.max_positions is not None and end + n > e.max_positions:
            raise UserError(f"--prefill {prefill} + --decode {decode} + speculation "
                            f"({config.draft_steps} drafts, {n} verified positions) exceeds "
                            f"{e.name}'s maximum of {e.max_positions} positions")
    base = get_workload(t, prefill=prefill, decode=decode, batch=batch, dtype=dtype,
                        use_cache=use_cache)
    kw = {"batch": batch, "dtype": dtype, "use_cache": use_cache}
    # a tree pass also processes the last emitted token: it becomes node 0, the tree's root
    tree = (-1, *(p + 1 for p in config.tree)) if config.tree else None
    vf = get_graph(t, Phase.VERIFY, tokens=n, context=prefill, tree=tree, **kw)
    vl = get_graph(t, Phase.VERIFY, tokens=n, context=end, tree=tree, **kw)
    return SpeculativeWorkload(
        **{f: getattr(base, f) for f in ("model", "batch", "prefill_tokens", "decode_tokens",
                                         "prefill", "decode_first", "decode_last")},
        draft=d.name, config=config,
        draft_prefill=get_graph(d, Phase.PREFILL, tokens=prefill, **kw),
        draft_first=get_graph(d, Phase.DECODE, context=prefill, **kw),
        draft_last=get_graph(d, Phase.DECODE, context=end, **kw),
        verify_first=vf, verify_last=vl, vocab=_vocab(t))
