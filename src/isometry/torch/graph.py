"""The structure of a PyTorch model, read from its computation graph: :func:`read_structure`.

The order in which a model's modules are registered says nothing about the order in which
``forward`` uses them, nor about the functions it calls (``torch.tanh(x)``, ``x + f(x)``). So the
structure is read from the graph of the computation:

1. **Tracing.** ``torch.fx`` traces the model symbolically (modules of ``torch.nn`` and
   :mod:`isometry` are atoms; user modules are traced through; ``nn.TransformerEncoder`` is
   unrolled into its layers). A model that does not trace (data-dependent control flow) is
   *recorded* instead: its ``forward`` runs once on ``example_input`` with forward hooks on the
   atomic modules and a ``TorchFunctionMode`` recording the functions called between them; the
   data flow is read from the identity of the tensors passed along.
2. **Ops.** Every call is classified (:data:`OP_KINDS`): affine layers (``Linear``, ``Conv1d/2d/3d``
   of any stride, groups and padding mode), activations (modules recognised by
   :func:`isometry.torch.detect_activation`, and functional calls through
   :func:`isometry.torch.modules.functional_activation_module`), normalisation layers
   (BatchNorm, LayerNorm, GroupNorm, RMSNorm, InstanceNorm), average and max pooling (modules,
   functionals, ``x.mean(dims)``), shape maps (flatten, reshape, view, permute, dropout,
   identity, indexing), scalings by a constant, additions, embeddings, ``nn.MultiheadAttention``,
   ``nn.TransformerEncoderLayer`` and per-example input normalisation
   (:class:`isometry.torch.InputNormalization`); anything else is ``unknown``.
3. **Cut points.** An op is a cut point when no value computed before it is used after it: the
   whole state of the computation passes through its output. The model is the composition of
   the *segments* between consecutive cut points, so the Jacobian of any run of segments is a
   well-defined sub-map (from one cut point's output to a later one's).
4. **Units.** Segments are grouped into units: ``critical`` (affine layer, then an activation),
   ``linear`` (affine layer alone), ``residual`` (a segment adding its own input, through
   identity-like ops or a projection, to one or more branches), ``transformer``, ``attention``,
   ``normalised`` (affine layer, normalisation, optional activation), ``norm``, ``module``
   (anything else with parameters), ``embedding`` and ``map`` (parameter-free maps: pooling,
   reshapes, dropout, scalings, lone activations, output maps).

A module applied more than once appears once per application (``Op.call`` counts them).
"""

from __future__ import annotations

import inspect
import math
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..activations import Activation
from .modules import InputNormalization, detect_activation, functional_activation_module

__all__ = ["Op", "Unit", "Structure", "read_structure", "OP_KINDS", "UNIT_KINDS", "COUNTED_UNITS", "is_atomic"]

# ------------------------------------------------------------------------------ vocabulary
INPUT, OUTPUT, AFFINE, ACTIVATION, NORM = "input", "output", "affine", "activation", "norm"
AVG_POOL, MAX_POOL, SHAPE, SCALE, ADD = "avg_pool", "max_pool", "shape", "scale", "add"
EMBEDDING, ATTENTION, ENCODER, OUTPUT_MAP, VALUE, CONSTANT, UNKNOWN = (
    "embedding", "attention", "encoder_layer", "output_map", "value", "constant", "unknown")
INPUT_NORM = "input_norm"
OP_KINDS = (INPUT, OUTPUT, AFFINE, ACTIVATION, NORM, AVG_POOL, MAX_POOL, SHAPE, SCALE, ADD, EMBEDDING, ATTENTION,
            ENCODER, OUTPUT_MAP, VALUE, CONSTANT, INPUT_NORM, UNKNOWN)

UNIT_KINDS = ("critical", "linear", "residual", "transformer", "attention", "normalised", "norm", "module",
              "embedding", "map")
#: Units that count as one layer (or block) of depth.
COUNTED_UNITS = frozenset({"critical", "residual", "transformer", "attention", "normalised", "norm", "module"})
#: Units set by measurement (calibration) rather than by the mean-field theory.
CALIBRATED_UNITS = frozenset({"residual", "transformer", "attention", "normalised", "norm", "module"})

AFFINE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm,
              nn.modules.instancenorm._InstanceNorm)
_AVG_POOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                   nn.AdaptiveAvgPool3d)
_MAX_POOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                   nn.AdaptiveMaxPool3d)
_OUTPUT_TYPES = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)

_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__,
                  torch.Tensor.__iadd__, torch.Tensor.__radd__, "add", "add_", "__add__", "__iadd__", "__radd__"}
_SCALE_FUNCTIONS = {operator.mul, operator.imul, operator.truediv, operator.itruediv, torch.mul, torch.div,
                    torch.Tensor.mul, torch.Tensor.mul_, torch.Tensor.div, torch.Tensor.div_, torch.Tensor.__mul__,
                    torch.Tensor.__rmul__, torch.Tensor.__truediv__, torch.Tensor.__imul__, torch.Tensor.__itruediv__,
                    "mul", "mul_", "div", "div_", "__mul__", "__rmul__", "__truediv__"}
_DIVIDING = {operator.truediv, operator.itruediv, torch.div, torch.Tensor.div, torch.Tensor.div_,
             torch.Tensor.__truediv__, torch.Tensor.__itruediv__, "div", "div_", "__truediv__"}
_SHAPE_NAMES = {"view", "reshape", "flatten", "permute", "transpose", "contiguous", "squeeze", "unsqueeze", "t",
                "unflatten", "clone", "detach", "float", "double", "to", "type_as", "movedim", "swapaxes",
                "__getitem__", "view_as", "reshape_as", "dropout", "dropout1d", "dropout2d", "dropout3d",
                "alpha_dropout", "feature_alpha_dropout", "flatten", "squeeze_", "unsqueeze_", "getitem"}
_OUTPUT_NAMES = {"softmax", "log_softmax", "softmin"}
_VALUE_NAMES = {"size", "dim", "numel", "__get__", "shape", "dtype", "device", "ndim", "ndimension", "stride"}
_AVG_POOL_NAMES = {"avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
                   "adaptive_avg_pool3d", "mean"}
_MAX_POOL_NAMES = {"max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
                   "adaptive_max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
                   "max_pool3d_with_indices", "adaptive_max_pool2d_with_indices", "_max_pool2d", "_max_pool1d",
                   "_max_pool3d", "boolean_dispatch"}


class Ref:
    """A reference to the value of op ``index`` inside the arguments of another op."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Ref({self.index})"


@dataclass
class Op:
    """One call in the model's computation (a node of its graph)."""

    index: int
    name: str
    op: str  # placeholder, call_module, call_function, call_method, get_attr, output
    target: Any
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    inputs: tuple[int, ...] = ()
    kind: str = UNKNOWN
    module: nn.Module | None = None
    activation: Activation | None = None
    note: str = ""
    owner: str = ""  # the innermost module the call happens in ("" for the model itself)
    owner_type: str = ""
    call: int = 0  # which application of its module this is (0: the first)
    live: bool = False
    depends_on_input: bool = False
    shape: tuple[int, ...] | None = None
    gain2: float | None = None  # mean eigenvalue of J J^T of a parameter-free linear map, when known

    @property
    def label(self) -> str:
        """The module's qualified name, or the function's node name."""
        if self.op == "call_module":
            return str(self.target)
        return self.name

    @property
    def description(self) -> str:
        """``'name' (Type)`` for module calls, ``tanh call 'tanh_1' in 'block' (Block)`` otherwise."""
        if self.op == "call_module":
            return f"{self.target!r} ({type(self.module).__name__})" + (
                f" (application {self.call + 1})" if self.call else "")
        if self.op == "placeholder":
            return "the model input"
        fn = self.target if isinstance(self.target, str) else getattr(self.target, "__name__", repr(self.target))
        where = f" in {self.owner!r} ({self.owner_type})" if self.owner else ""
        return f"{fn} call {self.name!r}{where}"


@dataclass
class Unit:
    """A group of consecutive segments the initialisation treats as one layer or block."""

    kind: str
    start: int  # the op whose output is the unit's input
    end: int  # the op whose output is the unit's output
    ops: tuple[int, ...]
    affine: tuple[int, ...] = ()  # affine ops inside
    activation: Activation | None = None  # the unit of a critical layer
    knobs: tuple[int, ...] = ()  # ops whose parameters calibration scales (residual: one per branch)
    fallback_knob: int | None = None  # a normalisation after the block: its affine weight scales chi
    width_in: int | None = None
    width_out: int | None = None
    note: str = ""
    role: str = ""  # stem, body or head
    pre_gain2: float = 1.0  # gain^2 of the parameter-free maps since the previous unit (critical: compensated)
    theory: tuple[int, int, int | None] | None = None  # residual x + a phi(W x + b): (affine, activation, scale) ops
    skip_gain2: float = 1.0  # residual with an identity-like shortcut: the square of the constant scaling it
    branch: tuple[tuple[int, ...], tuple[int, ...], int | None] | None = None  # a branch that is a chain of square
    # affine layers and activations (and shape maps), then optionally a scale: (affine ops, activation ops, scale op)

    @property
    def counted(self) -> bool:
        return self.kind in COUNTED_UNITS

    shaped: bool = False  # a residual block set by a kernel-shaped mode (from its branch)

    @property
    def calibrated(self) -> bool:
        return self.kind in CALIBRATED_UNITS and self.theory is None and not self.shaped

    @property
    def square(self) -> bool:
        return self.width_in is not None and self.width_in == self.width_out


@dataclass
class Structure:
    """The ops, cut points and units of a model (:func:`read_structure`)."""

    model: nn.Module
    ops: list[Op]
    cuts: list[int]
    units: list[Unit]
    traced: str  # "fx" or "hooks"
    graph: fx.Graph | None = None
    example_input: Any = None
    trace_error: str = ""


# ------------------------------------------------------------------------------ atoms
def is_atomic(m: nn.Module, *, unroll_encoders: bool) -> bool:
    """Whether ``m`` is one op of the graph: modules of ``torch.nn`` and of isometry (except
    ``Sequential`` and, when ``unroll_encoders``, ``nn.TransformerEncoder``) and modules tagged with
    ``isometry_activation``; user modules are traced through."""
    if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
        return False
    if isinstance(m, (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)):
        return False
    if unroll_encoders and type(m) is nn.TransformerEncoder:
        return False
    if getattr(m, "isometry_activation", None) is not None:
        return True
    mod = type(m).__module__
    return mod.startswith(("torch.nn", "torch.ao.nn", "isometry."))


def module_features(m: nn.Module) -> tuple[int | None, int | None]:
    """(input, output) features (Linear) or channels (convolutions) of a module, when it has them."""
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features
    if isinstance(m, AFFINE_TYPES):
        return m.in_channels, m.out_channels
    if isinstance(m, nn.modules.batchnorm._BatchNorm) or isinstance(m, nn.modules.instancenorm._InstanceNorm):
        return m.num_features, m.num_features
    if isinstance(m, nn.GroupNorm):
        return m.num_channels, m.num_channels
    if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
        shape = m.normalized_shape
        n = int(shape[-1]) if shape else None
        return n, n
    if isinstance(m, nn.MultiheadAttention):
        return m.embed_dim, m.embed_dim
    if isinstance(m, nn.TransformerEncoderLayer):
        return m.self_attn.embed_dim, m.self_attn.embed_dim
    if isinstance(m, nn.Embedding):
        return None, m.embedding_dim
    return None, None


def _fn_name(target) -> str:
    if isinstance(target, str):
        return target
    return getattr(target, "__name__", "")


# ------------------------------------------------------------------------------ classification
def _number(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _classify(op: Op) -> None:
    """Set ``op.kind`` (and activation, gain) from what the op calls."""
    if op.op == "placeholder":
        op.kind = INPUT
        return
    if op.op == "output":
        op.kind = OUTPUT
        return
    if op.op in ("get_attr", "constant"):
        op.kind = CONSTANT
        return
    if op.op == "call_module":
        m = op.module
        if isinstance(m, AFFINE_TYPES):
            op.kind = AFFINE
        elif isinstance(m, InputNormalization):
            op.kind = INPUT_NORM
        elif isinstance(m, NORM_TYPES):
            op.kind = NORM
        elif isinstance(m, _AVG_POOL_TYPES):
            op.kind = AVG_POOL
            ks = getattr(m, "kernel_size", None)
            if ks is not None and not isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
                dims = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}[type(m)] if type(m) in (
                    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d) else 1
                k = ks if isinstance(ks, (tuple, list)) else (ks,) * dims
                op.gain2 = 1.0 / math.prod(int(v) for v in k)
        elif isinstance(m, _MAX_POOL_TYPES):
            op.kind, op.gain2 = MAX_POOL, 1.0
        elif isinstance(m, _OUTPUT_TYPES):
            op.kind = OUTPUT_MAP
        elif isinstance(m, nn.Embedding):
            op.kind = EMBEDDING
        elif isinstance(m, nn.MultiheadAttention):
            op.kind = ATTENTION
        elif isinstance(m, nn.TransformerEncoderLayer):
            op.kind = ENCODER
        elif isinstance(m, (nn.Flatten, nn.Unflatten, nn.modules.dropout._DropoutNd)) or type(m) is nn.Identity:
            op.kind, op.gain2 = SHAPE, 1.0
        else:
            det = detect_activation(m)
            if det is not None:
                op.kind, op.activation, op.note = ACTIVATION, det[0], det[1]
            else:
                op.kind = UNKNOWN
        return
    # functions and methods
    target = op.target
    name = _fn_name(target)
    tensors = [a for a in op.args if isinstance(a, Ref)]
    if name in _VALUE_NAMES:
        op.kind = VALUE
        return
    mod = functional_activation_module(target if not isinstance(target, str) else target,
                                       tuple(op.args[1:]), op.kwargs)
    if mod is None and isinstance(target, str):
        mod = functional_activation_module(getattr(torch.Tensor, target, None), tuple(op.args[1:]), op.kwargs)
    if mod is not None and op.args and isinstance(op.args[0], Ref):
        det = detect_activation(mod)
        if det is not None:
            op.kind, op.activation, op.note = ACTIVATION, det[0], det[1]
            return
    if target in _ADD_FUNCTIONS or name in ("add", "add_", "__add__", "__iadd__", "__radd__", "iadd"):
        if len(tensors) >= 2 and op.kwargs.get("alpha", 1) == 1:
            op.kind = ADD
        elif len(tensors) == 1:
            op.kind = UNKNOWN  # adding a constant: an affine shift
        return
    if target in _SCALE_FUNCTIONS or name in ("mul", "mul_", "truediv", "div", "__mul__", "__rmul__",
                                              "__truediv__", "imul", "itruediv"):
        consts = [_number(a) for a in op.args if not isinstance(a, Ref)]
        if len(tensors) == 1 and len(consts) == 1 and consts[0] is not None and consts[0] != 0:
            c = consts[0]
            if target in _DIVIDING or name in ("truediv", "div", "__truediv__", "itruediv"):
                c = 1.0 / c
            op.kind, op.gain2 = SCALE, c * c
        return
    if name in _SHAPE_NAMES or target in (torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze,
                                          torch.unsqueeze, operator.getitem, F.dropout, F.dropout1d, F.dropout2d,
                                          F.dropout3d, F.alpha_dropout, torch.movedim, torch.swapaxes, torch.t):
        op.kind = SHAPE
        op.gain2 = None if (target is operator.getitem or name == "__getitem__") else 1.0
        return
    if name in _OUTPUT_NAMES or target in (F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax):
        op.kind = OUTPUT_MAP
        return
    if name in _MAX_POOL_NAMES or target in (F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d,
                                             F.adaptive_max_pool2d, F.adaptive_max_pool3d):
        op.kind, op.gain2 = MAX_POOL, 1.0
        return
    if name in _AVG_POOL_NAMES or target in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
                                             F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.mean):
        if name == "mean" and len(op.args) < 2 and "dim" not in op.kwargs:
            op.kind = UNKNOWN  # a mean over everything: a scalar
            return
        op.kind = AVG_POOL
        if name.startswith("avg_pool"):
            ks = op.args[1] if len(op.args) > 1 else op.kwargs.get("kernel_size")
            dims = int(name[-2])
            if isinstance(ks, int):
                op.gain2 = 1.0 / ks**dims
            elif isinstance(ks, (tuple, list)) and all(isinstance(v, int) for v in ks):
                op.gain2 = 1.0 / math.prod(ks)
        return
    op.kind = UNKNOWN


# ------------------------------------------------------------------------------ tracing (torch.fx)
class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_atomic(m, unroll_encoders=False)


def _concrete_args(model: nn.Module) -> dict[str, Any] | None:
    """Defaults of ``forward``'s arguments after the first, fixed while tracing (masks = None)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    out = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise ValueError(f"critical_init_: {type(model).__name__}.forward needs the argument {p.name!r} besides the "
                             "input; initialise a module whose forward takes one input")
        out[p.name] = p.default
    return out or None


def _unroll_encoders(model: nn.Module, graph: fx.Graph) -> None:
    """Replace each call of an ``nn.TransformerEncoder`` without masks by calls of its layers (and
    its final norm): the same function, and every layer becomes an op of its own."""
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        m = model.get_submodule(node.target)
        if type(m) is not nn.TransformerEncoder:
            continue
        extra = list(node.args[1:]) + [v for k, v in node.kwargs.items() if k != "src"]
        if any(v not in (None, False) for v in extra):
            continue  # masks given: the encoder stays one block
        prev = node.args[0] if node.args else node.kwargs["src"]
        with graph.inserting_before(node):
            for i in range(len(m.layers)):
                prev = graph.call_module(f"{node.target}.layers.{i}", (prev,))
            if m.norm is not None:
                prev = graph.call_module(f"{node.target}.norm", (prev,))
        node.replace_all_uses_with(prev)
        graph.erase_node(node)


def _owner(node: fx.Node, model: nn.Module) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    key = list(stack.keys())[-1]
    path, cls = stack[key]
    if node.op == "call_module" and path == node.target and len(stack) > 1:
        path, cls = stack[list(stack.keys())[-2]]
    name = getattr(cls, "__name__", str(cls))
    return str(path), name


def _ops_from_fx(model: nn.Module, graph: fx.Graph) -> list[Op]:
    index: dict[fx.Node, int] = {}
    ops: list[Op] = []
    calls: dict[int, int] = {}
    first_input = True
    for node in graph.nodes:
        i = len(ops)
        if node.op == "placeholder" and not first_input:  # an argument fixed at its default while tracing
            ops.append(Op(i, node.name, "constant", node.args[0] if node.args else None))
            index[node] = i
            continue
        if node.op == "placeholder":
            first_input = False
        args = fx.node.map_arg(node.args, lambda n: Ref(index[n]))
        kwargs = fx.node.map_arg(node.kwargs, lambda n: Ref(index[n]))
        op = Op(i, node.name, node.op, node.target, tuple(args) if isinstance(args, (tuple, list)) else (args,),
                dict(kwargs), tuple(index[n] for n in node.all_input_nodes))
        if node.op == "call_module":
            op.module = model.get_submodule(node.target)
            k = id(op.module)
            op.call = calls.get(k, 0)
            calls[k] = op.call + 1
        op.owner, op.owner_type = _owner(node, model)
        index[node] = i
        ops.append(op)
    return ops


def _trace_fx(model: nn.Module, concrete: dict[str, Any] | None) -> tuple[fx.Graph, list[Op]]:
    graph = _Tracer().trace(model, concrete_args=concrete)
    _unroll_encoders(model, graph)
    graph.lint()
    return graph, _ops_from_fx(model, graph)


# ------------------------------------------------------------------------------ recording (hooks)
class _Stop(Exception):
    pass


def _atoms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The atomic modules of the recorded route, outermost first (their children are not hooked)."""
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, m: nn.Module) -> None:
        if prefix and is_atomic(m, unroll_encoders=True):
            out.append((prefix, m))
            return
        for n, c in m.named_children():
            walk(f"{prefix}.{n}" if prefix else n, c)

    walk("", model)
    return out


def _record(model: nn.Module, example_input) -> list[Op]:
    """Run ``model(example_input)`` once and record its atomic module calls and the torch
    functions called between them, in execution order, with the data flow between them."""
    from torch.overrides import TorchFunctionMode
    from torch.utils import _pytree as pytree

    ops: list[Op] = [Op(0, "input", "placeholder", "input")]
    produced: dict[int, tuple[int, tuple]] = {}  # id(tensor) -> (op index, path inside its output)
    keep: list[Any] = []  # recorded values stay alive so that ids stay unique
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    names.update({id(b): n for n, b in model.named_buffers(remove_duplicate=False)})
    atoms = _atoms(model)
    atom_names = {id(m): n for n, m in atoms}
    calls: dict[int, int] = {}
    state = {"depth": 0, "owner": []}

    def ref_of(t) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        hit = produced.get(id(t))
        if hit is not None:
            i, path = hit
            if not path:
                return Ref(i)
            j = len(ops)  # an implicit selection of one output of a multi-output op
            ops.append(Op(j, f"getitem_{j}", "call_function", operator.getitem, (Ref(i), path[0]), {}, (i,)))
            return Ref(j)
        j = len(ops)
        if id(t) in names:
            ops.append(Op(j, names[id(t)].replace(".", "_"), "get_attr", names[id(t)]))
        else:
            ops.append(Op(j, f"constant_{j}", "constant", t))
        produced[id(t)] = (j, ())
        keep.append(t)
        return Ref(j)

    def add(name: str, kind: str, target, args, kwargs, out, module=None) -> None:
        a = pytree.tree_map(ref_of, tuple(args))
        k = pytree.tree_map(ref_of, dict(kwargs))
        inputs = tuple(sorted({r.index for r in pytree.tree_leaves((a, k)) if isinstance(r, Ref)}))
        i = len(ops)
        op = Op(i, name, kind, target, tuple(a), dict(k), inputs, module=module)
        if module is not None:
            op.call = calls.get(id(module), 0)
            calls[id(module)] = op.call + 1
        if state["owner"]:
            op.owner, op.owner_type = state["owner"][-1]
        ops.append(op)
        leaves, spec = pytree.tree_flatten(out)
        if isinstance(out, torch.Tensor):
            op.shape = tuple(out.shape)
            produced[id(out)] = (i, ())
        else:
            for n, leaf in enumerate(leaves):
                if isinstance(leaf, torch.Tensor):
                    produced[id(leaf)] = (i, (n,))
        keep.append(out)

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if state["depth"] == 0:
                name = _fn_name(func) or "fn"
                add(f"{name}_{len(ops)}", "call_function", func, args, kwargs, out)
            return out

    handles = []

    def pre(m, args, kwargs):
        if state["depth"] == 0:
            state["args"] = (args, kwargs)
        state["depth"] += 1

    def post(m, args, kwargs, out):
        state["depth"] -= 1
        if state["depth"] == 0:
            a, k = state.pop("args")
            add(atom_names[id(m)].replace(".", "_"), "call_module", atom_names[id(m)], a, k, out, module=m)

    for _, m in atoms:
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    x = example_input
    produced[id(x)] = (0, ())
    keep.append(x)
    try:
        with Mode():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    refs = pytree.tree_map(ref_of, out)
    inputs = tuple(sorted({r.index for r in pytree.tree_leaves(refs) if isinstance(r, Ref)}))
    ops.append(Op(len(ops), "output", "output", "output", (refs,), {}, inputs))
    # owners of function calls: the recorded route only knows the model itself
    return ops


# ------------------------------------------------------------------------------ cut points
def _mark_live(ops: list[Op]) -> None:
    """``depends_on_input`` (a descendant of the input) and ``live`` (also an ancestor of the output)."""
    for op in ops:
        op.depends_on_input = op.kind == INPUT or any(ops[i].depends_on_input for i in op.inputs)
    needed = {len(ops) - 1}
    for op in reversed(ops):
        if op.index in needed:
            needed.update(op.inputs)
    for op in ops:
        op.live = op.depends_on_input and op.index in needed


def _cuts(ops: list[Op]) -> list[int]:
    """Live ops through whose output the whole computation passes."""
    last_use = {op.index: op.index for op in ops if op.live}
    for op in ops:
        if op.live:
            for i in op.inputs:
                if ops[i].live:
                    last_use[i] = max(last_use[i], op.index)
    cuts, reach = [], -1
    for op in ops:
        if not op.live:
            continue
        if reach <= op.index:
            cuts.append(op.index)
        reach = max(reach, last_use[op.index])
    return cuts


# ------------------------------------------------------------------------------ units
def _data_inputs(op: Op, ops: list[Op]) -> list[int]:
    return [i for i in op.inputs if ops[i].live]


def _identity_like(i: int, start: int, ops: list[Op]) -> bool:
    """Op ``i`` computes the segment input ``start`` through reshapes and scalings only."""
    while i != start:
        op = ops[i]
        if op.kind not in (SHAPE, SCALE):
            return False
        ins = _data_inputs(op, ops)
        if len(ins) != 1:
            return False
        i = ins[0]
    return True


def _path_gain2(i: int, start: int, ops: list[Op]) -> float:
    """The product of the gains^2 of the scalings on the identity-like path from ``start`` to op ``i``."""
    g2 = 1.0
    while i != start:
        op = ops[i]
        if op.kind == SCALE and op.gain2 is not None:
            g2 *= op.gain2
        i = _data_inputs(op, ops)[0]
    return g2


def _projection(i: int, start: int, ops: list[Op]) -> bool:
    """Op ``i`` is an affine projection (optionally normalised) of the segment input."""
    for _ in range(3):
        op = ops[i]
        if op.kind not in (AFFINE, NORM, SHAPE):
            return False
        ins = _data_inputs(op, ops)
        if len(ins) != 1:
            return False
        i = ins[0]
        if _identity_like(i, start, ops):
            return True
    return False


def _add_terms(i: int, seg: set[int], ops: list[Op]) -> list[int]:
    """The summands of a tree of additions ending at op ``i`` (within the segment)."""
    op = ops[i]
    if op.kind != ADD or i not in seg:
        return [i]
    out: list[int] = []
    for a in op.args:
        if isinstance(a, Ref) and ops[a.index].live:
            out += _add_terms(a.index, seg, ops)
    return out


_SCALABLE = (AFFINE, NORM, ATTENTION, ENCODER, UNKNOWN)


def _has_params(op: Op) -> bool:
    return op.module is not None and any(p.is_floating_point() for p in op.module.parameters())


def _knob_of(i: int, start: int, ops: list[Op]) -> int | None:
    """The last op with parameters on the main input chain ending at op ``i``."""
    seen = 0
    while i != start and seen < 10_000:
        seen += 1
        op = ops[i]
        if op.kind in _SCALABLE and _has_params(op):
            if op.kind != NORM or _norm_affine(op.module):
                return i
        ins = _data_inputs(op, ops)
        if not ins:
            return None
        i = ins[0]
    return None


def _norm_affine(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return isinstance(w, torch.Tensor)


def _features_of(op_indices, ops: list[Op]) -> tuple[int | None, int | None]:
    """Input features of the first op and output features of the last op that know theirs."""
    fin = fout = None
    for i in op_indices:
        if ops[i].module is not None:
            a, _ = module_features(ops[i].module)
            if a is not None:
                fin = a
                break
    for i in reversed(list(op_indices)):
        if ops[i].module is not None:
            _, b = module_features(ops[i].module)
            if b is not None:
                fout = b
                break
    return fin, fout


def _segment_unit(a: int, b: int, seg: list[int], ops: list[Op]) -> Unit:
    """A multi-op segment: a residual block when its output adds its own input to branches."""
    segset = set(seg)
    terms = _add_terms(b, segset, ops) if ops[b].kind == ADD else []
    skips = [t for t in terms if _identity_like(t, a, ops)]
    if not skips:
        skips = [t for t in terms if _projection(t, a, ops)]
    if terms and len(skips) == 1 and len(terms) >= 2:
        branches = [t for t in terms if t not in skips]
        knobs = tuple(k for k in (_knob_of(t, a, ops) for t in branches) if k is not None)
        skip = skips[0]
        if _identity_like(skip, a, ops):
            branch_ops = [i for i in seg if ops[i].kind not in (ADD,)]
            fin, fout = _features_of(branch_ops, ops)
            width = fin if fin is not None else fout
            unit = Unit("residual", a, b, tuple(seg), knobs=knobs, width_in=width, width_out=width,
                        skip_gain2=_path_gain2(skip, a, ops))
            if len(branches) == 1:
                unit.theory = _theory_branch(branches[0], a, seg, ops)
                unit.branch = _chain_branch(branches[0], a, seg, ops)
                if unit.theory is not None:
                    unit.activation = ops[unit.theory[1]].activation
        else:
            fin, _ = _features_of([i for i in seg], ops)
            _, fout = _features_of([skip], ops)
            unit = Unit("residual", a, b, tuple(seg), knobs=knobs, width_in=fin, width_out=fout,
                        note="projection shortcut")
        unit.affine = tuple(i for i in seg if ops[i].kind == AFFINE)
        if len(knobs) < len(branches):
            unit.note = "; ".join(x for x in (unit.note, "a branch without parameters to scale") if x)
        return unit
    knob = _knob_of(b, a, ops)
    fin, fout = _features_of(seg, ops)
    return Unit("module", a, b, tuple(seg), affine=tuple(i for i in seg if ops[i].kind == AFFINE),
                knobs=(knob,) if knob is not None else (), width_in=fin, width_out=fout)


_MUL = {operator.mul, torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__, "mul", "__mul__",
        "__rmul__"}


def scale_parameter(op: Op, ops: list[Op]) -> tuple[str, int] | None:
    """(parameter name, index of the other factor) when ``op`` multiplies a tensor by a parameter
    of the model (a learnable branch scale, x + alpha f(x)); None otherwise."""
    try:
        is_mul = op.target in _MUL
    except TypeError:
        is_mul = False
    if not is_mul or len(op.args) != 2 or not all(isinstance(v, Ref) for v in op.args):
        return None
    first, second = (ops[v.index] for v in op.args)
    if first.op == "get_attr" and second.live:
        return str(first.target), second.index
    if second.op == "get_attr" and first.live:
        return str(second.target), first.index
    return None


def _peel_scale(t: int, ops: list[Op]) -> tuple[int, int | None] | None:
    """(op before the branch's output scale, the scale op) when op ``t`` scales one input by a constant
    or a model parameter; (t, None) when it is no scale; None when the scale has several data inputs."""
    op = ops[t]
    param = scale_parameter(op, ops)
    if op.kind != SCALE and param is None:
        return t, None
    ins = [param[1]] if param is not None else _data_inputs(op, ops)
    if len(ins) != 1:
        return None
    return ins[0], t


def _theory_branch(t: int, a: int, seg: list[int], ops: list[Op]) -> tuple[int, int, int | None] | None:
    """The branch of x + s phi(W x + b) (s a constant, a model parameter or 1): (affine, activation,
    scale) op indices, when the branch is exactly that and W is square (a Linear, or a convolution of
    stride 1 keeping its channels)."""
    peeled = _peel_scale(t, ops)
    if peeled is None:
        return None
    t, scale = peeled
    if ops[t].kind != ACTIVATION:
        return None
    act = t
    ins = _data_inputs(ops[act], ops)
    if len(ins) != 1 or ops[ins[0]].kind != AFFINE:
        return None
    aff = ins[0]
    ins = _data_inputs(ops[aff], ops)
    if len(ins) != 1 or not _identity_like(ins[0], a, ops):
        return None
    if not _square_affine(ops[aff].module):
        return None
    used = {aff, act, scale, seg[-1]}
    if any(i not in used and not (ops[i].kind in (SHAPE, SCALE) and _identity_like(i, a, ops)) for i in seg):
        return None
    return aff, act, scale


def _square_affine(m: nn.Module) -> bool:
    """A Linear, or a convolution of stride 1 and dilation 1, keeping its width, without groups."""
    fin, fout = module_features(m)
    if fin != fout or getattr(m, "groups", 1) != 1:
        return False
    return isinstance(m, nn.Linear) or (all(v == 1 for v in m.stride) and all(v == 1 for v in m.dilation))


def _chain_branch(t: int, a: int, seg: list[int], ops: list[Op]
                  ) -> tuple[tuple[int, ...], tuple[int, ...], int | None] | None:
    """The branch ending at op ``t`` as a chain from the segment input ``a``: square affine layers,
    activations and shape maps, then optionally a scale (a constant, a model parameter): (affine
    ops, activation ops, scale op), in order; None when the branch is anything else or has no
    activation. The residual blocks of kernel shaping, w x + v f(x)."""
    peeled = _peel_scale(t, ops)
    if peeled is None:
        return None
    t, scale = peeled
    affines: list[int] = []
    acts: list[int] = []
    used = {scale, seg[-1]}
    for _ in range(10_000):
        if _identity_like(t, a, ops):
            break
        op = ops[t]
        if op.kind == AFFINE and _square_affine(op.module):
            affines.append(t)
        elif op.kind == ACTIVATION:
            acts.append(t)
        elif not (op.kind == SHAPE and op.gain2 == 1.0):
            return None
        ins = _data_inputs(op, ops)
        if len(ins) != 1:
            return None
        used.add(t)
        t = ins[0]
    else:
        return None
    if not acts:
        return None
    if any(i not in used and not (ops[i].kind in (SHAPE, SCALE) and _identity_like(i, a, ops)) for i in seg):
        return None
    return tuple(reversed(affines)), tuple(reversed(acts)), scale


def _live_range(ops: list[Op], a: int, b: int) -> tuple[int, ...]:
    return tuple(i for i in range(a + 1, b + 1) if ops[i].live)


def _build_units(ops: list[Op], cuts: list[int], override: Activation | None) -> list[Unit]:
    segs: list[tuple[int, int, list[int]]] = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        seg = [i for i in range(a + 1, b + 1) if ops[i].live]
        segs.append((a, b, seg))
    units: list[Unit] = []
    k = 0

    def single(j: int) -> Op | None:
        if j >= len(segs):
            return None
        a, b, seg = segs[j]
        return ops[b] if len(seg) == 1 else None

    while k < len(segs):
        a, b, seg = segs[k]
        op = ops[b]
        if op.kind == OUTPUT:
            k += 1
            continue
        if len(seg) > 1:
            units.append(_segment_unit(a, b, seg, ops))
            k += 1
            continue
        if op.kind == AFFINE:
            # affine, then reshapes, then an activation / a normalisation (and an activation)
            j = k + 1
            while single(j) is not None and single(j).kind == SHAPE and single(j).gain2 == 1.0:
                j += 1
            nxt = single(j)
            fin, fout = module_features(op.module)
            if nxt is not None and nxt.kind == ACTIVATION:
                act = override if override is not None else nxt.activation
                units.append(Unit("critical", a, nxt.index, _live_range(ops, a, nxt.index), affine=(b,),
                                  activation=act, width_in=fin, width_out=fout, note=nxt.note if override is None else ""))
                k = j + 1
                continue
            if nxt is not None and nxt.kind == NORM:
                j2 = j + 1
                while single(j2) is not None and single(j2).kind == SHAPE and single(j2).gain2 == 1.0:
                    j2 += 1
                last = single(j2)
                end = last.index if last is not None and last.kind == ACTIVATION else nxt.index
                knob = nxt.index if _norm_affine(nxt.module) else b
                units.append(Unit("normalised", a, end, _live_range(ops, a, end), affine=(b,), knobs=(knob,),
                                  width_in=fin, width_out=fout))
                k = (j2 + 1) if end != nxt.index else (j + 1)
                continue
            if nxt is not None and nxt.kind == UNKNOWN and not _has_params(nxt) and _is_next_pointwise(nxt):
                if override is not None:
                    units.append(Unit("critical", a, nxt.index, _live_range(ops, a, nxt.index), affine=(b,),
                                      activation=override, width_in=fin, width_out=fout))
                else:
                    units.append(Unit("module", a, nxt.index, _live_range(ops, a, nxt.index), affine=(b,),
                                      knobs=(b,), width_in=fin, width_out=fout,
                                      note=f"{nxt.description} after {op.description} is not a recognised activation"))
                k = j + 1
                continue
            units.append(Unit("linear", a, b, (b,), affine=(b,), width_in=fin, width_out=fout))
            k += 1
            continue
        if op.kind == ENCODER:
            m = op.module
            fallback = None if m.norm_first else b
            units.append(Unit("transformer", a, b, (b,), knobs=(b,), width_in=module_features(m)[0],
                              width_out=module_features(m)[1], fallback_knob=fallback,
                              note="pre-LN" if m.norm_first else "post-LN"))
            k += 1
            continue
        if op.kind == ATTENTION:
            j, end = k + 1, b
            nxt = single(j)
            if nxt is not None and nxt.kind == SHAPE and nxt.target in (operator.getitem,):
                end = nxt.index
                j += 1
            d = op.module.embed_dim
            units.append(Unit("attention", a, end, _live_range(ops, a, end), knobs=(b,), width_in=d, width_out=d))
            k = j
            continue
        if op.kind == NORM:
            fin, fout = module_features(op.module)
            knobs = (b,) if _norm_affine(op.module) else ()
            units.append(Unit("norm", a, b, (b,), knobs=knobs, width_in=fin, width_out=fout))
            k += 1
            continue
        if op.kind == EMBEDDING:
            units.append(Unit("embedding", a, b, (b,), width_out=module_features(op.module)[1]))
            k += 1
            continue
        if op.kind == UNKNOWN and _has_params(op):
            fin, fout = module_features(op.module)
            units.append(Unit("module", a, b, (b,), knobs=(b,), width_in=fin, width_out=fout))
            k += 1
            continue
        units.append(Unit("map", a, b, (b,)))
        k += 1

    # a lone activation right after a block belongs to the block (relu(x + f(x))); so does a lone
    # normalisation followed by another block (post-norm blocks, LN(x + f(x))); a normalisation
    # after the last block (the final norm of pre-norm networks) stays a block of its own
    blocky = ("residual", "transformer", "attention", "module")
    merged: list[Unit] = []
    for j, u in enumerate(units):
        prev = merged[-1] if merged else None
        op = ops[u.end]
        later = next((v for v in units[j + 1:] if not (v.kind == "map" and all(ops[i].kind == SHAPE for i in v.ops))),
                     None)
        absorb = (prev is not None and u.kind in ("map", "norm") and len(u.ops) == 1 and prev.kind in blocky
                  and (op.kind == ACTIVATION or (op.kind == NORM and later is not None and later.kind in blocky)))
        if absorb:
            prev.end = u.end
            prev.ops = prev.ops + u.ops
            prev.theory, prev.branch, prev.activation = None, None, None  # phi(x + f(x)) is another block
            if op.kind == NORM and _norm_affine(op.module):
                prev.fallback_knob = u.end
            prev.note = "; ".join(x for x in (prev.note, f"then {op.description}") if x)
            continue
        merged.append(u)
    return merged


def _is_next_pointwise(op: Op) -> bool:
    """A parameter-free call with one tensor input (a candidate activation)."""
    return len([a for a in op.args if isinstance(a, Ref)]) == 1


# ------------------------------------------------------------------------------ shapes
def _shapes(structure: Structure) -> None:
    """Record every op's output shape by running the model on its example input."""
    from .body import run_ops

    if structure.example_input is not None and structure.traced == "fx":
        with torch.no_grad():
            values = run_ops(structure, structure.example_input, keep_all=True)
        for op in structure.ops:
            v = values.get(op.index)
            if isinstance(v, torch.Tensor):
                op.shape = tuple(v.shape)
    for op in structure.ops:  # gains of pools that need sizes
        if op.kind == AVG_POOL and op.gain2 is None and op.shape is not None:
            ins = _data_inputs(op, structure.ops)
            src = structure.ops[ins[0]].shape if ins else None
            if src is not None and math.prod(op.shape) > 0:
                ratio = math.prod(src) / math.prod(op.shape)
                op.gain2 = 1.0 / ratio if ratio >= 1 else None


# ------------------------------------------------------------------------------ entry point
def read_structure(model: nn.Module, example_input=None, *, activation: Activation | None = None) -> Structure:
    """Trace (or record) ``model`` and return its ops, cut points and units.

    Raises:
        ValueError: the model neither traces nor, without ``example_input``, can be recorded;
            or its forward needs more than one input.
    """
    trace_error = ""
    concrete = _concrete_args(model)
    try:
        graph, ops = _trace_fx(model, concrete)
        traced = "fx"
    except Exception as exc:  # torch.fx raises many kinds of errors on untraceable code
        trace_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if example_input is None:
            raise ValueError(
                f"critical_init_: torch.fx cannot trace {type(model).__name__} ({trace_error}); pass example_input= "
                "(one batch of inputs) so that its execution order can be recorded by forward hooks") from None
        graph = None
        with torch.no_grad():
            ops = _record(model, example_input)
        traced = "hooks"
    for op in ops:
        _classify(op)
    _mark_live(ops)
    if not ops[-1].live:
        raise ValueError(f"critical_init_: the output of {type(model).__name__} does not depend on its input")
    structure = Structure(model, ops, [], [], traced, graph, example_input, trace_error)
    _shapes(structure)
    structure.cuts = _cuts(ops)
    structure.units = _build_units(ops, structure.cuts, activation)
    return structure


def unit_name(unit: Unit, ops: list[Op]) -> str:
    """A readable name: the common module prefix of the unit's modules, or its first and last op."""
    labels = [ops[i].label for i in unit.ops if ops[i].op == "call_module"]
    if not labels:
        labels = [ops[i].label for i in unit.ops]
    if len(labels) == 1:
        return labels[0]
    parts = [lab.split(".") for lab in labels]
    common = []
    for group in zip(*parts):
        if all(g == group[0] for g in group):
            common.append(group[0])
        else:
            break
    if common and unit.kind in ("residual", "module", "transformer", "attention"):
        return ".".join(common)
    return f"{labels[0]}..{labels[-1]}"

