"""Reference kernels in torch with integer semantics (exact), CPU or CUDA.

Import the submodules directly (``from kernels.csd_chain import csd_chain``); this package
imports nothing so that ``import kernels`` stays cheap and torch-free.
"""

__all__ = ["csd_chain", "dequant", "softmax", "verify"]
