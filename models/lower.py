"""Lower an ATen-level ``torch.export`` program to the IR of ``models.graph``.

Each ATen op is looked up in the op tables below; an op in no table fails with a message that
names it, the model and where to add a lowering. Views are transparent (they move no data);
the ops of one norm or activation module become one node; RoPE is recognised by data flow
from the rotary-embedding module; attention reads of the cache are counted as KV bytes.

Mixture-of-experts blocks: ``models.trace`` builds the model with transformers'
``batched_mm`` experts implementation (``integrations/moe.py``): each (token, pick) pair
gathers its expert's weights and runs a batched GEMV, so the exported program has static
shapes whatever the routing (the default loop over hit experts needs ``nonzero``, which the
meta device cannot answer). All ops inside a module whose class ends in ``Experts`` (with its
activation) become one ``OpKind.EXPERTS`` node recording E, k, tokens, one expert's bytes and
GEMMs (``_Lowerer._experts_attrs``); ``models.moe.route`` then sets the weight bytes a routing
reads. The router's gate linear is tagged ``moe="router"`` and ``topk`` ``moe="topk"``.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

from models.errors import UserError
from models.graph import Graph, Node, OpKind, Param, Phase, dtype_bytes

__all__ = ["LoweringError", "lower"]


class LoweringError(UserError):
    """An ATen op the lowering has no rule for."""


# -- op tables (ATen overload-packet names) ---------------------------------------------------
_VIEW_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "transpose", "t", "permute", "unsqueeze", "squeeze",
    "expand", "slice", "select", "alias", "detach", "detach_", "contiguous", "clone",
    "dropout", "lift_fresh_copy", "split", "split_with_sizes", "unbind", "chunk", "narrow",
    "as_strided", "flatten", "unflatten", "expand_as", "view_as", "movedim", "lift_fresh",
    "numpy_T", "mT", "mH", "adjoint", "swapaxes", "swapdims", "view_as_real", "view_as_complex",
})
_META_OPS = frozenset({"_assert_tensor_metadata", "sym_size", "sym_numel", "_assert_async",
                       "sym_constrain_range_for_size", "_assert_scalar", "sym_storage_offset"})
_ELEMENTWISE_OPS = frozenset({
    "add", "sub", "rsub", "mul", "div", "neg", "pow", "rsqrt", "sqrt", "exp", "log", "tanh",
    "cos", "sin", "sigmoid", "where", "le", "lt", "gt", "ge", "eq", "ne", "bitwise_and",
    "bitwise_or", "bitwise_not", "logical_and", "logical_or", "logical_not", "masked_fill",
    "clamp", "clamp_min", "clamp_max", "minimum", "maximum", "abs", "reciprocal", "to",
    "_to_copy", "type_as", "erf", "fill", "floor", "ceil", "round", "remainder", "fmod",
    "floor_divide", "sign", "square", "log1p", "expm1", "isinf", "isnan", "nan_to_num",
    "__and__", "__or__", "__xor__", "__invert__", "bitwise_xor", "lerp", "addcmul", "addcdiv",
})
_ACTIVATION_OPS = frozenset({"silu", "gelu", "relu", "leaky_relu", "mish", "hardswish",
                             "softplus", "elu", "selu", "celu", "sigmoid_", "gelu_"})
_REDUCTION_OPS = frozenset({"mean", "sum", "amax", "amin", "max", "min", "var", "var_mean",
                            "cumsum", "cumprod", "argmax", "argmin", "prod", "any", "all",
                            "norm", "logsumexp", "topk", "sort"})
_DATA_OPS = frozenset({"cat", "stack", "arange", "zeros", "ones", "full", "empty", "new_ones",
                       "new_zeros", "new_full", "new_empty", "zeros_like", "ones_like",
                       "full_like", "empty_like", "index", "index_select", "gather", "scatter",
                       "copy", "copy_", "repeat", "tril", "triu", "scalar_tensor", "tensor",
                       "index_put", "masked_select", "roll", "flip", "pad", "constant_pad_nd",
                       "repeat_interleave", "diff", "tile"})
_LINEAR_OPS = frozenset({"linear", "addmm", "mm", "bmm", "matmul", "baddbmm", "einsum"})
_SOFTMAX_OPS = frozenset({"softmax", "_softmax", "_safe_softmax", "log_softmax"})
_NORM_OPS = frozenset({"layer_norm", "native_layer_norm", "rms_norm", "group_norm"})
_ATTN_OPS = frozenset({"scaled_dot_product_attention"})

# Lookup order matters only for names in two tables (none today).
_KIND_TABLES: tuple[tuple[frozenset[str], OpKind], ...] = (
    (frozenset({"embedding"}), OpKind.EMBEDDING), (_ATTN_OPS, OpKind.ATTENTION),
    (_SOFTMAX_OPS, OpKind.SOFTMAX), (_NORM_OPS, OpKind.NORM),
    (_ACTIVATION_OPS, OpKind.ACTIVATION), (_REDUCTION_OPS, OpKind.REDUCTION),
    (_ELEMENTWISE_OPS, OpKind.ELEMENTWISE), (_DATA_OPS, OpKind.DATA),
)

_SOFTMAX_FLOPS_PER_ELEM = 5  # max, subtract, exp, sum, divide
_LAYER_RE = re.compile(r"\.(\d+)(?:\.|$)")
_NORM_CLASS_RE = re.compile(r"norm", re.IGNORECASE)
_ACT_CLASS_RE = re.compile(r"(activation|silu|gelu|relu|swish)$", re.IGNORECASE)
_ROTARY_CLASS_RE = re.compile(r"rotary", re.IGNORECASE)
_EXPERTS_CLASS_RE = re.compile(r"experts$", re.IGNORECASE)   # MixtralExperts, Qwen2MoeExperts
_ROUTER_CLASS_RE = re.compile(r"router$", re.IGNORECASE)     # MixtralTopKRouter, ...


@dataclass
class _Val:
    """What a traced tensor is: an IR producer, a parameter, a cache tensor, or a constant."""

    producer: str | None            # IR node or graph input name; None for constants
    shape: tuple[int, ...]
    dtype: str
    param: str | None = None        # parameter name, if this is (a view of) a parameter
    kv_bytes: int = 0               # >0: (a view of) the KV cache, with its real size
    rotary: bool = False            # derived from rotary tables (RoPE)
    from_softmax: bool = False      # derived from attention probabilities

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return int(self.numel * dtype_bytes(self.dtype))


@dataclass
class _Raw:
    """A lowered op before norm/activation grouping."""

    name: str
    kind: OpKind
    op: str
    inputs: list[_Val]
    out: _Val
    flops: int
    module: str
    module_class: str
    weight_bytes: int = 0
    kv_read_bytes: int = 0
    kv_write_bytes: int = 0
    weights: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    experts: str = ""               # path of the enclosing experts module (MoE), if any


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def _val_of(fx_node: torch.fx.Node) -> Any:
    return fx_node.meta.get("val")


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in v.shape)


def _module_of(fx_node: torch.fx.Node) -> tuple[str, str]:
    stack = fx_node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return ("" if path == "m" else path.removeprefix("m.")), cls_name.rsplit(".", 1)[-1]


def _experts_of(fx_node: torch.fx.Node) -> str:
    """Path of the innermost module on the stack whose class is an MoE experts collection."""
    stack = fx_node.meta.get("nn_module_stack") or {}
    found = ""
    for path, cls in stack.values():
        cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
        if _EXPERTS_CLASS_RE.search(cls_name.rsplit(".", 1)[-1]):
            found = path.removeprefix("m.")
    return found


def _layer_of(module: str) -> int:
    m = _LAYER_RE.search(module)
    return int(m.group(1)) if m else -1


def _packet(target: Any) -> str:
    if target is operator.getitem:
        return "getitem"
    packet = getattr(target, "_overloadpacket", None)
    return getattr(packet, "__name__", None) or getattr(target, "__name__", str(target))


class _Lowerer:
    def __init__(self, ep: ExportedProgram, model: str):
        self.ep = ep
        self.model = model
        self.vals: dict[torch.fx.Node, Any] = {}
        self.raws: list[_Raw] = []
        self.params: dict[str, Param] = {}
        self.past: list[str] = []
        self.top_k = 0                  # k of the last top-k seen (the router before experts)
        self.experts_k: dict[str, int] = {}  # experts module -> k of the top-k before it

    # -- placeholders ----------------------------------------------------------------------
    def placeholders(self) -> None:
        kinds = {s.arg.name: s for s in self.ep.graph_signature.input_specs}
        tied: dict[int, str] = {}
        for n in self.ep.graph.nodes:
            if n.op != "placeholder":
                continue
            spec, v = kinds.get(n.name), _val_of(n)
            if not isinstance(v, torch.Tensor):
                self.vals[n] = v
                continue
            shape, dt = _shape(v), _dtype_name(v.dtype)
            if spec is not None and spec.kind is InputKind.PARAMETER:
                # Tied weights (e.g. GPT-2's lm_head and wte) are one tensor: one Param.
                tensor = self.ep.state_dict.get(spec.target)
                pname = tied.setdefault(id(tensor), spec.target.removeprefix("m."))
                self.params.setdefault(pname, Param(pname, shape, dt))
                self.vals[n] = _Val(None, shape, dt, param=pname)
            elif spec is not None and spec.kind is InputKind.USER_INPUT and n.name != "ids":
                idx = len(self.past)
                self.past.append(n.name)
                val = _Val(f"past.{idx // 2}.{('key', 'value')[idx % 2]}", shape, dt)
                val.kv_bytes = val.nbytes  # past K/V of one layer
                self.vals[n] = val
            elif spec is not None and spec.kind is InputKind.USER_INPUT:
                self.vals[n] = _Val("input_ids", shape, dt)
            else:  # buffers and lifted constants (rotary inv_freq, empty cache tensors)
                self.vals[n] = _Val(None, shape, dt)

    # -- helpers ---------------------------------------------------------------------------
    def _tensor_args(self, n: torch.fx.Node) -> list[_Val]:
        out: list[_Val] = []

        def visit(a: Any) -> None:
            if isinstance(a, torch.fx.Node):
                v = self.vals.get(a)
                if isinstance(v, _Val):
                    out.append(v)
                elif isinstance(v, (list, tuple)):
                    out.extend(x for x in v if isinstance(x, _Val))
            elif isinstance(a, (list, tuple)):
                for x in a:
                    visit(x)

        for a in list(n.args) + list(n.kwargs.values()):
            visit(a)
        return out

    def _alias(self, n: torch.fx.Node, src: _Val) -> None:
        v = _val_of(n)
        if isinstance(v, (list, tuple)):
            self.vals[n] = [replace(src, shape=_shape(x), dtype=_dtype_name(x.dtype))
                            for x in v if isinstance(x, torch.Tensor)]
        else:
            self.vals[n] = replace(src, shape=_shape(v), dtype=_dtype_name(v.dtype))

    def _fail(self, n: torch.fx.Node, name: str) -> None:
        module, _ = _module_of(n)
        raise LoweringError(
            f"cannot lower ATen op {n.target} (node {n.name} in module {module or '<root>'}) of "
            f"model {self.model!r}: add its name to one of the op tables in models/lower.py "
            f"(_ELEMENTWISE_OPS, _DATA_OPS, _VIEW_OPS, ...) or give it a rule in "
            f"_Lowerer.call, with a test in tests/torch/")

    # -- one call_function node --------------------------------------------------------------
    def call(self, n: torch.fx.Node) -> None:
        name = _packet(n.target)
        if name.endswith("_") and not name.startswith("_") and name not in _VIEW_OPS:
            name = name[:-1]  # in-place variants (div_, mul_) cost what their out-of-place do
        out = _val_of(n)
        args = self._tensor_args(n)
        if name in _META_OPS or out is None:
            return
        if name == "getitem":
            src = self.vals.get(n.args[0])
            if isinstance(src, list):
                self.vals[n] = src[n.args[1]] if n.args[1] < len(src) else None
            elif isinstance(src, _Val):
                self._alias(n, src)
            return
        if name in _VIEW_OPS:
            if args:
                self._alias(n, args[0])
            return
        if not isinstance(out, torch.Tensor):
            if isinstance(out, (list, tuple)) and all(isinstance(x, torch.Tensor) for x in out):
                out = out[0]  # e.g. var_mean: account the first result
            else:
                self._fail(n, name)
        if name == "cat" and self._cat(n, args, out):
            return
        kind = self._kind(n, name, args)
        res = _Val(n.name, _shape(out), _dtype_name(out.dtype))
        module, cls = _module_of(n)
        if not module and kind in (OpKind.ELEMENTWISE, OpKind.DATA):
            # The tracing wrapper's own cache bookkeeping, outside the model: a constant.
            res.producer = None
            self.vals[n] = res
            return
        raw = _Raw(n.name, kind, str(n.target), args, res, 0, module, cls,
                   experts=_experts_of(n))
        self._cost(raw, name, n, args, res)
        self._tag_moe(raw, name, n)
        if raw.experts:
            self.experts_k.setdefault(raw.experts, self.top_k)
        elementwise = kind in (OpKind.ELEMENTWISE, OpKind.DATA)
        res.rotary = _ROTARY_CLASS_RE.search(cls) is not None or (
            elementwise and any(a.rotary for a in args))
        res.from_softmax = kind is OpKind.SOFTMAX or (
            elementwise and any(a.from_softmax for a in args))
        if res.rotary and elementwise:
            raw.kind = OpKind.ROPE
        self.raws.append(raw)
        self.vals[n] = res

    def _tag_moe(self, raw: _Raw, name: str, n: torch.fx.Node) -> None:
        """Router gate linears and top-k selections carry ``moe`` (and ``top_k``) attrs."""
        if name == "topk":
            self.top_k = int(n.args[1])
            raw.attrs.update(moe="topk", top_k=self.top_k)
        elif raw.kind in (OpKind.LINEAR, OpKind.MATMUL) \
                and _ROUTER_CLASS_RE.search(raw.module_class):
            raw.attrs.pop("role", None)   # not attention: a MATMUL when the router casts
            raw.attrs["moe"] = "router"   # its weight first (DeepSeek-V3's float32 gate)

    def _cat(self, n: torch.fx.Node, args: list[_Val], out: torch.Tensor) -> bool:
        """KV-cache appends and cache fills are cats; True when handled here."""
        nonempty = [a for a in args if a.numel > 0]
        has_cache = any(a.kv_bytes for a in args) or len(nonempty) < len(args)
        if not has_cache:
            return False
        new = [a for a in nonempty if not a.kv_bytes]
        res = _Val(n.name, _shape(out), _dtype_name(out.dtype))
        res.kv_bytes = res.nbytes
        if not new:  # the wrapper filling the cache from the past tensors: no data moves
            self.vals[n] = res
            src = nonempty[0] if nonempty else None
            res.producer = src.producer if src else None
            return True
        module, cls = _module_of(n)
        written = sum(a.nbytes for a in new)
        self.raws.append(_Raw(n.name, OpKind.KV_APPEND, str(n.target), new, res, 0, module, cls,
                              kv_write_bytes=written))
        self.vals[n] = res
        return True

    def _kind(self, n: torch.fx.Node, name: str, args: list[_Val]) -> OpKind:
        if name in _LINEAR_OPS:
            return OpKind.LINEAR if any(a.param for a in args) else OpKind.MATMUL
        for table, kind in _KIND_TABLES:
            if name in table:
                return kind
        self._fail(n, name)
        raise AssertionError("unreachable")

    def _cost(self, raw: _Raw, name: str, n: torch.fx.Node, args: list[_Val], res: _Val) -> None:
        kind = raw.kind
        if kind in (OpKind.LINEAR, OpKind.MATMUL):
            a = next(x for x in args if not x.param) if kind is OpKind.LINEAR else args[-2]
            k = a.shape[-1] if a.shape else 1
            has_bias = name in ("addmm", "baddbmm") or (name == "linear" and len(args) > 2)
            raw.flops = 2 * res.numel * k + (res.numel if has_bias else 0)
            if kind is OpKind.MATMUL:
                raw.attrs["role"] = "pv" if any(x.from_softmax for x in args) else "qk"
        elif kind is OpKind.ATTENTION:
            q, kk = args[0], args[1]
            raw.flops = 4 * q.numel * kk.shape[-2]  # QK^T and PV: 2 * B*H*Tq*D*Tk each
        elif kind is OpKind.SOFTMAX:
            raw.flops = _SOFTMAX_FLOPS_PER_ELEM * res.numel
        elif kind is OpKind.REDUCTION:
            raw.flops = max((x.numel for x in args), default=0)
        elif kind in (OpKind.ELEMENTWISE, OpKind.ACTIVATION, OpKind.NORM):
            raw.flops = res.numel * (5 if kind is OpKind.NORM else 1)
        for x in args:
            if x.param:
                raw.weights.append(x.param)
                raw.weight_bytes += res.nbytes if kind is OpKind.EMBEDDING else x.nbytes
            elif x.kv_bytes:
                raw.kv_read_bytes += x.kv_bytes

    # -- grouping and output ------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        self._mark_rope_producers()
        groups: list[list[_Raw]] = []
        for r in self.raws:
            group_kind = self._group_kind(r)
            prev = groups[-1] if groups else None
            if (group_kind is not None and prev
                    and (prev[0].experts or prev[0].module) == (r.experts or r.module)
                    and self._group_kind(prev[0]) is group_kind):
                prev.append(r)
            else:
                groups.append([r])
        renamed: dict[str, str] = {}
        counts: dict[tuple[str, str], int] = {}
        nodes = []
        for g in groups:
            node = self._node(g, renamed)
            key = (node.module or "root", node.kind.value)
            k = counts.get(key, 0)
            counts[key] = k + 1
            name = f"{key[0]}/{key[1]}" + (f".{k}" if k else "")
            for r in g:
                renamed[r.name] = name
            nodes.append(replace(node, name=name))
        return nodes

    @staticmethod
    def _group_kind(r: _Raw) -> OpKind | None:
        if r.experts:
            return OpKind.EXPERTS
        if _NORM_CLASS_RE.search(r.module_class):
            return OpKind.NORM
        if _ACT_CLASS_RE.search(r.module_class):
            return OpKind.ACTIVATION
        return None

    def _mark_rope_producers(self) -> None:
        """rotate_half's neg/cat feed only RoPE ops: they are part of RoPE too."""
        consumers: dict[str, list[_Raw]] = {}
        for r in self.raws:
            for a in r.inputs:
                if a.producer:
                    consumers.setdefault(a.producer, []).append(r)
        for r in reversed(self.raws):
            cons = consumers.get(r.name, [])
            if (r.kind in (OpKind.ELEMENTWISE, OpKind.DATA) and cons
                    and all(c.kind is OpKind.ROPE for c in cons)):
                r.kind = OpKind.ROPE

    def _node(self, group: list[_Raw], renamed: dict[str, str]) -> Node:
        first, last = group[0], group[-1]
        inside = {r.name for r in group}
        ext: list[_Val] = []
        for r in group:
            ext.extend(a for a in r.inputs if a.producer not in inside)
        act_in = [a for a in ext if not a.param and not a.kv_bytes and a.producer]
        weights = list(dict.fromkeys(w for r in group for w in r.weights))
        kind = self._group_kind(first) if len(group) > 1 or self._group_kind(first) else first.kind
        if kind is None:
            kind = first.kind
        name = first.name
        attrs = dict(first.attrs)
        if len(group) > 1:
            attrs["aten_ops"] = ",".join(r.op.removeprefix("aten.") for r in group)
        weight_bytes = sum(r.weight_bytes for r in group)
        module = first.experts or first.module
        if kind is OpKind.EXPERTS:
            attrs = self._experts_attrs(group, weights)
            weight_bytes = attrs["num_experts"] * attrs["expert_bytes"]  # all, until routed
        return Node(
            name=name, kind=kind,
            op=first.module_class if len(group) > 1 else first.op,
            inputs=tuple(renamed.get(a.producer, a.producer) for a in ext if a.producer),
            in_shapes=tuple(a.shape for a in ext if a.producer),
            out_shape=last.out.shape, dtype=last.out.dtype,
            flops=sum(r.flops for r in group),
            weight_bytes=weight_bytes,
            act_bytes=sum(a.nbytes for a in act_in) + last.out.nbytes,
            kv_read_bytes=sum(r.kv_read_bytes for r in group),
            kv_write_bytes=sum(r.kv_write_bytes for r in group),
            layer=_layer_of(module), module=module, weights=tuple(weights),
            attrs=tuple(sorted(attrs.items())),
        )

    def _experts_attrs(self, group: list[_Raw], weights: list[str]) -> dict[str, Any]:
        """E, k, tokens, one expert's bytes, FLOPs and GEMMs of an experts node.

        The experts' weights are (E, N, K) parameters (biases (E, N)); one token through one
        expert multiplies a K-vector by each (N, K) matrix. The traced GEMMs must add up to
        tokens x k x that, which checks both the layout read here and k.
        """
        where = group[0].experts
        params = [self.params[w] for w in weights]
        experts = {p.shape[0] for p in params}
        last = group[-1].out
        tokens = last.numel // max(last.shape[-1], 1)
        top_k = self.experts_k.get(where, 0)
        if len(experts) != 1 or not top_k:
            raise LoweringError(f"experts module {where} of {self.model!r}: expected "
                                f"parameters stacked over one expert axis after a top-k "
                                f"router, got shapes {[p.shape for p in params]}")
        (e,) = experts
        gemms = tuple((p.shape[2], p.shape[1]) for p in params if len(p.shape) == 3)
        flops = 2 * sum(k * n for k, n in gemms)
        traced = sum(r.flops for r in group if r.kind in (OpKind.MATMUL, OpKind.LINEAR))
        if traced != tokens * top_k * flops:
            raise LoweringError(f"experts module {where} of {self.model!r}: its GEMMs do "
                                f"{traced} FLOPs, not tokens x top-k x per-expert "
                                f"({tokens} x {top_k} x {flops}); weights laid out as "
                                f"{[p.shape for p in params]} are not (E, N, K)")
        return {"moe": "experts", "num_experts": e, "top_k": top_k, "tokens": tokens,
                "expert_bytes": sum(p.bytes for p in params) // e, "expert_flops": flops,
                "expert_gemms": gemms,
                "aten_ops": ",".join(r.op.removeprefix("aten.") for r in group)}


def lower(ep: ExportedProgram, model: str, phase: Phase, *, batch: int, tokens: int,
          context: int, dtype: str, meta: dict[str, Any] | None = None) -> Graph:
    """The IR graph of an exported forward pass."""
    lw = _Lowerer(ep, model)
    lw.placeholders()
    for n in ep.graph.nodes:
        if n.op == "call_function":
            lw.call(n)
    nodes = lw.nodes()
    return Graph(model=model, phase=phase, batch=batch, tokens=tokens, context=context,
                 dtype=dtype, nodes=tuple(nodes), params=tuple(lw.params.values()),
                 meta=tuple(sorted((meta or {}).items())))


