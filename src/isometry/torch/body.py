"""Sub-maps of a model between two cut points of its graph, as modules: :class:`Segment`.

:func:`isometry.torch.critical_init_` names the sub-map its predicted spectrum describes (the
*body*); ``InitReport.body(model)`` returns it as a :class:`Segment`, a ``torch.nn.Module``
computing exactly that sub-map of ``model`` (sharing its parameters), and
``InitReport.body_input(model, x)`` the body's input for the model input ``x``; so
``jacobian_eigenvalues(report.body(model), report.body_input(model, x)[:1])`` measures the
Jacobian the prediction is about. Calibration evaluates every block the same way.

* A traced model (``torch.fx``) is interpreted op by op from the segment's start to its end.
* A recorded model (forward hooks; it does not trace) runs its own ``forward`` on a driving
  input with the output of the start op replaced by the segment's input, and stops at the end
  op; the driving input (the example input, cut or repeated to the batch size) only feeds ops
  before the start, whose values are discarded.

Scaled dot-product attention runs on PyTorch's math kernel inside a segment, so that
forward-mode derivatives (``torch.func.jvp``) exist for attention layers.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from .graph import INPUT, Op, Ref, Structure, _Stop, _atoms

__all__ = ["Segment", "run_ops"]


@contextlib.contextmanager
def math_attention():
    """Attention on code paths with forward-mode derivatives (jvp): scaled dot-product attention on
    the math kernel, and the fused fast path of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer``
    (taken in eval mode when no parameter requires grad) switched off."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def _fetch(model: nn.Module, target: str):
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _resolve(value, env: dict[int, Any], lookup):
    if isinstance(value, Ref):
        return lookup(value.index)
    if isinstance(value, tuple):
        return tuple(_resolve(v, env, lookup) for v in value)
    if isinstance(value, list):
        return [_resolve(v, env, lookup) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, env, lookup) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(_resolve(value.start, env, lookup), _resolve(value.stop, env, lookup),
                     _resolve(value.step, env, lookup))
    return value


def _interpret(ops: list[Op], modules: dict[int, nn.Module], model: nn.Module, env: dict[int, Any],
               first: int, last: int) -> dict[int, Any]:
    """Evaluate the live ops first..last (``env`` holds the input); input-independent values
    (parameters, constants) are evaluated when first needed."""

    def lookup(i: int):
        if i in env:
            return env[i]
        op = ops[i]
        if op.depends_on_input:
            raise RuntimeError(f"the value of {op.description} is needed but was computed before the segment")
        env[i] = _eval(op)
        return env[i]

    def _eval(op: Op):
        args = _resolve(op.args, env, lookup)
        kwargs = _resolve(op.kwargs, env, lookup)
        if op.op == "call_module":
            return modules[op.index](*args, **kwargs)
        if op.op == "call_function":
            return op.target(*args, **kwargs)
        if op.op == "call_method":
            obj, *rest = args
            return getattr(obj, op.target)(*rest, **kwargs)
        if op.op == "get_attr":
            return _fetch(model, op.target)
        if op.op == "constant":
            return op.target
        if op.op == "output":
            return args[0]
        raise RuntimeError(f"cannot evaluate op {op.op}")  # pragma: no cover

    for i in range(first, last + 1):
        op = ops[i]
        if not op.live or i in env:
            continue
        env[i] = _eval(op)
    return env


def _modules_for(ops: list[Op], model: nn.Module, first: int, last: int) -> dict[int, nn.Module]:
    out = {}
    for op in ops:
        if op.op == "call_module" and (first <= op.index <= last or not op.depends_on_input):
            try:
                out[op.index] = model.get_submodule(op.target)
            except AttributeError:
                raise ValueError(f"the model has no module {op.target!r}: it is not the model the report was made "
                                 "for (or one of the same structure)") from None
    return out


def run_ops(structure: Structure, x, *, model: nn.Module | None = None, start: int = 0, end: int | None = None,
            keep_all: bool = False):
    """The value of op ``end`` (default: the output) given the value ``x`` of op ``start``
    (default: the model input); with ``keep_all`` the dict of every value computed."""
    ops = structure.ops
    model = structure.model if model is None else model
    end = len(ops) - 1 if end is None else end
    if end == start and not keep_all:
        return x
    if structure.traced != "fx":
        seg = Segment(model, structure, start, end)
        return seg(x)
    modules = _modules_for(ops, model, start, end)
    with math_attention():
        env = _interpret(ops, modules, model, {start: x}, start + 1, end)
    return env if keep_all else env[end]


class Segment(nn.Module):
    """The sub-map of ``model`` from the output of op ``start`` to the output of op ``end``.

    Both ops are cut points of the model's graph, so the value of ``start`` is all the sub-map
    needs. The module shares ``model``'s parameters (it holds ``model`` as a submodule).
    """

    def __init__(self, model: nn.Module, structure: Structure, start: int, end: int):
        super().__init__()
        self.model = model
        self._ops = structure.ops
        self._start, self._end = int(start), int(end)
        self._traced = structure.traced
        self._driver = structure.example_input
        if self._traced == "fx":
            self._modules_by_op = _modules_for(self._ops, model, self._start, self._end)

    @property
    def span(self) -> tuple[str, str]:
        """Labels of the start op (whose output is the input) and the end op."""
        return self._ops[self._start].label, self._ops[self._end].label

    def extra_repr(self) -> str:
        a, b = self._ops[self._start], self._ops[self._end]
        return f"from the output of {a.description} to the output of {b.description}"

    def forward(self, z):
        if self._end == self._start:
            return z
        with math_attention():
            if self._traced == "fx":
                env = _interpret(self._ops, self._modules_by_op, self.model, {self._start: z}, self._start + 1,
                                 self._end)
                return env[self._end]
            return self._run_recorded(z)

    # ---------------------------------------------------------------- the recorded route
    def _driver_for(self, z) -> Any:
        x = self._driver
        if self._ops[self._start].kind == INPUT:
            return z
        if not isinstance(x, torch.Tensor) or not isinstance(z, torch.Tensor) or z.dim() == 0 or x.dim() == 0:
            return x
        b = z.shape[0]
        if x.shape[0] >= b:
            return x[:b]
        reps = (b + x.shape[0] - 1) // x.shape[0]
        return torch.cat([x] * reps)[:b]

    def _run_recorded(self, z):
        from torch.overrides import TorchFunctionMode

        ops, start, end = self._ops, self._ops[self._start], self._ops[self._end]
        state = {"depth": 0, "count": {}, "out": None, "done": False}
        names = {id(m): n for n, m in _atoms(self.model)}

        def key_of(op: Op):
            if op.op == "call_module":
                return ("module", op.target, op.call)
            same = [o for o in ops[: op.index + 1] if o.op == "call_function" and o.target is op.target]
            return ("function", op.target, len(same) - 1)

        k_start = None if start.kind == INPUT else key_of(start)
        k_end = None if end.op == "output" else key_of(end)

        def visit(key_base, value):
            n = state["count"].get(key_base, 0)
            state["count"][key_base] = n + 1
            key = (*key_base, n)
            if key == k_start:
                value = z
            if key == k_end:
                state["out"], state["done"] = value, True
                raise _Stop
            return value

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                if state["depth"] == 0 and not state["done"]:
                    out = visit(("function", func), out)
                return out

        def pre(m, args):
            state["depth"] += 1

        def post(m, args, out):
            state["depth"] -= 1
            if state["depth"] == 0:
                return visit(("module", names[id(m)]), out)
            return None

        handles = []
        for _, m in _atoms(self.model):
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        try:
            with Mode():
                result = self.model(self._driver_for(z))
        except _Stop:
            result = state["out"]
        finally:
            for h in handles:
                h.remove()
        return result
