"""The model zoo: Hugging Face `transformers` configs written in code (no download).

Torch-free: an entry is the config class name and its keyword arguments, taken from the
published ``config.json`` of each checkpoint (the source is named per entry). ``models.trace``
turns an entry into a ``transformers`` model on the ``meta`` device. Any other decoder-only
config can be traced without code changes: pass its ``config.json`` path, or the directory
holding it, wherever a model name goes (``get_model``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import UserError, empty

__all__ = ["ZOO", "ModelEntry", "config_name", "entry_from_config_file", "get_model"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_class: str           # class in `transformers`, e.g. "LlamaConfig"
    config: Mapping[str, Any]   # keyword arguments of that class
    source: str                 # where the numbers come from
    aliases: tuple[str, ...] = field(default=())

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the config allows; None when it names no limit (e.g. ALiBi)."""
        for key in ("max_position_embeddings", "n_positions", "seq_length", "n_ctx"):
            if key in self.config:
                return int(self.config[key])
        return None

    @property
    def model_type(self) -> str:
        """The Hugging Face ``model_type`` ("llama"); zoo entries name their class only."""
        return str(self.config.get("model_type") or self.config_class.removeprefix("auto:")
                   .removesuffix("Config").lower())

    @property
    def layers(self) -> int:
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if key in self.config:
                return int(self.config[key])
        return 0

    @property
    def hidden(self) -> int:
        for key in ("hidden_size", "n_embd", "d_model"):
            if key in self.config:
                return int(self.config[key])
        return 0


def _llama(**kw: Any) -> dict[str, Any]:
    base = {"vocab_size": 32000, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": False, "hidden_act": "silu"}
    base.update(kw)
    return base


_ENTRIES = [
    ModelEntry("llama2-7b", "LlamaConfig", _llama(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, max_position_embeddings=4096),
        "meta-llama/Llama-2-7b-hf config.json", ("llama-2-7b",)),
    ModelEntry("llama2-13b", "LlamaConfig", _llama(
        hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
        num_key_value_heads=40, max_position_embeddings=4096),
        "meta-llama/Llama-2-13b-hf config.json", ("llama-2-13b",)),
    ModelEntry("opt-6.7b", "OPTConfig", {
        "vocab_size": 50272, "hidden_size": 4096, "ffn_dim": 16384, "num_hidden_layers": 32,
        "num_attention_heads": 32, "max_position_embeddings": 2048, "word_embed_proj_dim": 4096,
        "do_layer_norm_before": True, "activation_function": "relu", "enable_bias": True,
        "tie_word_embeddings": True},
        "facebook/opt-6.7b config.json"),
    ModelEntry("llama-68m", "LlamaConfig", _llama(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=2, num_attention_heads=12,
        num_key_value_heads=12, max_position_embeddings=2048, rms_norm_eps=1e-6),
        "JackFram/llama-68m config.json (SpecInfer's draft model)", ("llama68m",)),
    ModelEntry("tinyllama-1.1b", "LlamaConfig", _llama(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
        num_key_value_heads=4, max_position_embeddings=2048),
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json", ("tinyllama",)),
    ModelEntry("qwen2-0.5b", "Qwen2Config", {
        "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
        "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True, "hidden_act": "silu"},
        "Qwen/Qwen2-0.5B config.json"),
    ModelEntry("gpt2", "GPT2Config", {
        "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
        "activation_function": "gelu_new", "tie_word_embeddings": True},
        "openai-community/gpt2 config.json (124M)", ("gpt2-124m",)),
    # Mixture of experts: 8 experts, top-2, in every layer (46.7B parameters, ~12.9B active).
    ModelEntry("mixtral-8x7b", "MixtralConfig", _llama(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=32768, rope_theta=1000000.0,
        num_local_experts=8, num_experts_per_tok=2, sliding_window=None),
        "mistralai/Mixtral-8x7B-v0.1 config.json", ("mixtral",)),
    # Mixture of experts with a shared expert (DeepSeekMoE-style): 60 routed experts, top-4,
    # plus one always-on expert of 4 x the routed width behind a sigmoid gate (14.3B params).
    ModelEntry("qwen1.5-moe-a2.7b", "Qwen2MoeConfig", {
        "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632,
        "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
        "max_position_embeddings": 8192, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False, "hidden_act": "silu", "use_sliding_window": False,
        "decoder_sparse_step": 1, "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632, "num_experts_per_tok": 4, "num_experts": 60,
        "norm_topk_prob": False},
        "Qwen/Qwen1.5-MoE-A2.7B config.json", ("qwen-moe",)),
    # Fine-grained experts: 128 experts of width 768, top-8, no shared expert (30.5B params).
    ModelEntry("qwen3-30b-a3b", "Qwen3MoeConfig", {
        "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144,
        "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4,
        "head_dim": 128, "max_position_embeddings": 40960, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "hidden_act": "silu",
        "attention_bias": False, "use_sliding_window": False, "decoder_sparse_step": 1,
        "mlp_only_layers": [], "moe_intermediate_size": 768, "num_experts_per_tok": 8,
        "num_experts": 128, "norm_topk_prob": True},
        "Qwen/Qwen3-30B-A3B config.json"),
]

ZOO: Mapping[str, ModelEntry] = {e.name: e for e in _ENTRIES}
_ALIASES = {a: e.name for e in _ENTRIES for a in e.aliases}


def get_model(name: str) -> ModelEntry:
    """The zoo entry for ``name`` (or an alias), or the model of a ``config.json`` path or of
    a directory holding one; UserError listing the zoo otherwise."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key in ZOO:
        return ZOO[key]
    if name.strip() and (name.endswith(".json") or Path(name).exists()):
        return entry_from_config_file(name)
    raise UserError(f"unknown model {name!r}; the zoo has: {', '.join(ZOO)} (or give a "
                    "Hugging Face config.json path, or a directory holding one, as the model)")


def entry_from_config_file(path: str | Path) -> ModelEntry:
    """A model from a Hugging Face ``config.json`` or the directory holding it (its
    ``model_type`` picks the class); named as ``config_name`` says."""
    p = Path(path)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserError(f"no config.json in {str(p)!r} (a model directory holds the "
                            "Hugging Face config.json)")
        p = p / "config.json"
    try:
        text = p.read_text()
        if not text.strip():
            raise UserError(empty("config file", p, "a Hugging Face config.json with "
                                  "model_type"))
        cfg = json.loads(text)
    except FileNotFoundError:
        raise UserError(f"config file {str(p)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"config file {str(p)!r} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise UserError(f"config file {str(p)!r} has no 'model_type' (a Hugging Face config.json)")
    name = config_name(p, cfg)
    cfg = {k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version",
                                                     "torch_dtype", "dtype", "_name_or_path")}
    return ModelEntry(name, f"auto:{cfg['model_type']}", cfg, f"config file {p}")


def config_name(path: Path, cfg: Mapping[str, Any]) -> str:
    """What a model from a config file is called in every output: the checkpoint the config
    names (``_name_or_path``: "Qwen/Qwen2-0.5B"), else the file's folder (or the file's own
    name when it is not ``config.json``) with the ``model_type``: "my-model (llama)"."""
    named = str(cfg.get("_name_or_path") or "").strip().rstrip("/")
    if named:
        # a local path saved by save_pretrained says only where it was: keep its last part
        return Path(named).name if named.startswith(("/", ".", "~")) else named
    folder = path.resolve().parent.name if path.name == "config.json" else path.stem
    return f"{folder or path.stem} ({cfg['model_type']})"
