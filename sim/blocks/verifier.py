"""Timing of the speculative-decoding verifier (HADES-style hardware verification).

Greedy mode (one beat carries γ drafts and γ+1 target argmaxes): compare register, then
leading-match count and token mux into the output register → latency 2, one request per cycle.

Sampling mode (one beat per position, γ+1 beats per request, the last one the bonus position):
accept test + residual max(0, p − q) (1), residual sum and prefix sums (1), inverse-CDF threshold
and priority encoder (1), request state + output register (1) → latency 4 from the bonus beat,
initiation interval γ+1 cycles per request.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_GAMMA", "MODES", "VerifierTiming", "check_verifier_params", "round_cycles",
           "verifier_timing"]

MODES = ("greedy", "sample")
MAX_GAMMA = 16
MAX_VOCAB = 64  # sampling mode holds full p, q rows: a small vocabulary (a top-k shortlist)


def check_verifier_params(mode: str, gamma: int, vocab: int, token_bits: int) -> None:
    """Raise ValueError unless the verifier parameters are supported."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: must be one of {MODES}")
    if isinstance(gamma, bool) or not isinstance(gamma, int) or not 1 <= gamma <= MAX_GAMMA:
        raise ValueError(f"gamma {gamma!r}: draft length must be 1..{MAX_GAMMA}")
    if mode == "greedy" and not (isinstance(token_bits, int) and 1 <= token_bits <= 32):
        raise ValueError(f"token_bits {token_bits!r}: must be 1..32")
    if mode == "sample" and not (isinstance(vocab, int) and 2 <= vocab <= MAX_VOCAB):
        raise ValueError(f"vocab {vocab!r}: sampling mode supports 2..{MAX_VOCAB} candidates")


@dataclass(frozen=True)
class VerifierTiming:
    """Cycle figures of one verifier configuration."""

    mode: str
    gamma: int
    latency_cycles: int  # last beat of a request accepted → result valid
    ii_cycles: int  # between requests
    beats_per_request: int


def verifier_timing(mode: str, gamma: int, vocab: int = 16, token_bits: int = 16) -> VerifierTiming:
    """Latency/II of the verifier in ``mode`` with draft length ``gamma``."""
    check_verifier_params(mode, gamma, vocab, token_bits)
    if mode == "greedy":
        return VerifierTiming(mode, gamma, latency_cycles=2, ii_cycles=1, beats_per_request=1)
    return VerifierTiming(mode, gamma, latency_cycles=4, ii_cycles=gamma + 1,
                          beats_per_request=gamma + 1)


def round_cycles(mode: str, gamma: int, levels: int | None = None, vocab: int = 16) -> int:
    """Cycles of the verifier for one speculation round: a chain of ``gamma`` drafts, or a
    token tree of ``levels`` levels.

    A chain longer than the RTL's ``MAX_GAMMA`` is split into several requests; a tree is
    verified level by level (one request of one position per level, the candidates of a level
    compared against the target's choice at the accepted parent).
    """
    if levels is not None:
        t = verifier_timing(mode, 1, vocab=vocab)
        return levels * (t.beats_per_request + t.latency_cycles)
    total = 0
    for start in range(0, gamma, MAX_GAMMA):
        g = min(MAX_GAMMA, gamma - start)
        t = verifier_timing(mode, g, vocab=vocab)
        total += t.beats_per_request + t.latency_cycles
    return total
