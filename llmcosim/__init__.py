"""llmcosim: co-design suite for LLM inference hardware (CLI wiring; see README.md)."""

__all__ = ["__version__"]
__version__ = "0.1.0"
