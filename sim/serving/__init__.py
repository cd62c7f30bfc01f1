"""Serving simulation on top of the per-pass simulators (issue 20).

``requests`` makes the arrivals (Poisson or a JSONL trace) and their lengths, ``passes`` turns
the device simulators into a per-iteration cost table, ``scheduler`` runs continuous batching
with chunked prefill and KV-cache admission control, ``metrics`` summarises a run.
"""

__all__: list[str] = []
