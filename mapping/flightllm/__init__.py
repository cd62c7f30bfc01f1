"""FlightLLM mapping flow: compression, fusion/tiling/code generation, length buckets."""

from mapping.flightllm.compression import (
    CompressionConfig,
    apply_compression,
    default_config,
    load_config,
)

__all__ = ["CompressionConfig", "apply_compression", "default_config", "load_config"]
