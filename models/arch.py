"""Which Hugging Face architectures llmcosim traces, and the one message for those it cannot.

llmcosim models decoder-only causal LMs: a prompt (prefill), then one token at a time over a
KV cache. An encoder-only config (BERT) or an encoder-decoder one (T5, BART) is refused before
anything is built; an architecture that transformers builds but whose forward pass does not
export on the ``meta`` device, or lowers to ops ``models.lower`` has no rule for, fails with
``UnsupportedArchitecture`` from one place (``unsupported``), whichever command traced it.
"""

from __future__ import annotations

import re
from typing import Any

from models.errors import UserError

__all__ = ["SUPPORTED", "UnsupportedArchitecture", "check_decoder_only", "unsupported"]

# what the messages name as supported: the zoo's families and others traced in tests/torch
SUPPORTED = "decoder-only causal LMs (llama, mistral, qwen2, gemma2, opt, gpt2, ...)"


class UnsupportedArchitecture(UserError):
    """A config llmcosim cannot trace or lower; the message names the model and its type."""


def _label(name: str, model_type: str | None) -> str:
    return f"{name!r}" if not model_type or model_type in name else f"{name!r} ({model_type})"


def check_decoder_only(name: str, cfg: Any) -> None:
    """UnsupportedArchitecture unless ``cfg`` (a ``transformers`` config) is a decoder-only
    causal LM.

    transformers' own class tables decide: AutoModelForCausalLM also builds the decoder half
    of BART or a BERT with ``is_decoder`` (so a BERT config would trace as a decoder with a KV
    cache); the seq2seq and masked-LM tables name the encoder-decoder and encoder families.
    """
    from transformers.models.auto import modeling_auto as auto

    model_type = getattr(cfg, "model_type", None) or "?"
    kind = None
    if getattr(cfg, "is_encoder_decoder", False) \
            or model_type in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        kind = "an encoder-decoder model"
    elif model_type in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        kind = "an encoder (masked-LM) model"
    elif model_type not in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        kind = "not a causal LM in transformers"
    if kind:
        raise UnsupportedArchitecture(
            f"model {_label(name, model_type)} is {kind}; llmcosim traces {SUPPORTED}")


def unsupported(name: str, model_type: str | None, phase: str, why: str
                ) -> UnsupportedArchitecture:
    """The error for an architecture our tracing or lowering cannot handle (every command)."""
    why = (why.strip().splitlines() or ["?"])[0]
    why = why.split(": add its name")[0].removesuffix(".")  # lower's advice: contributors
    why = re.sub(r" of model '.*'$", "", why)
    return UnsupportedArchitecture(
        f"model {_label(name, model_type)} is not supported yet ({phase}: {why}); "
        "llmcosim traces decoder-only causal LMs whose forward pass exports on the meta "
        "device (no data-dependent control flow) and lowers to the ops in models/lower.py")
