"""Amaranth 0.5 components, one per file, named after their reference kernels in ``kernels/``.

Import the submodules directly (``from rtl.csd_chain import CsdChain``).
"""

__all__ = ["csd_chain", "dequant", "sfu", "verifier"]
