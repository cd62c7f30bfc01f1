"""cocotb testbenches, stimulus generators and runner helpers for the blocks in ``rtl/``."""

__all__ = ["blocks", "cli", "packing", "runner", "tb_stream"]
