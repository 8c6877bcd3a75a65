"""R training runs of one MLP shape as one batched model: stacked weights, per-run optimisers.

At the experiments' sizes (width 64, depth 32) a training step of one network costs a few hundred
small kernel calls; R networks of the same shape stacked along a leading *run* axis cost the same
number of calls, each R times larger (``torch.baddbmm`` over the runs). Every operation acts on
each run's slice alone: the matrix products are one product per run, the activation and the
optimiser updates are elementwise, the loss is a mean per run, and the gradient of the sum of the
runs' losses with respect to run r's weights is the gradient of run r's loss. So a run's numbers do
not depend on which other runs share its batch (on CPU bitwise; tested), and the batch can shrink
as runs finish.

- :class:`StackedMLP`: the parameters of R models built by :func:`isometry.experiments.build_mlp`
  (stem ``Linear(d, N)``, ``depth`` x [``Linear(N, N)``, phi], readout ``Linear(N, C)``, optionally
  after an :class:`isometry.torch.InputNormalization`), stored as ``stem_w`` (R, d, N), ``stem_b``
  (R, 1, N), ``hidden_w`` (L, R, N, N), ``hidden_b`` (L, R, 1, N), ``out_w`` (R, N, C), ``out_b``
  (R, 1, C) (weights transposed: ``h @ W``), with each run's input normalisation ``q`` (R, 1, 1).
- :class:`StackedOptimizer`: SGD, heavy-ball momentum, Adam and RMSProp with the update rules and
  defaults of ``torch.optim`` (Adam betas (0.9, 0.999), eps 1e-8; RMSProp alpha 0.99, eps 1e-8;
  momentum without dampening), a learning rate and momentum per run and a step count per run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..torch import InputNormalization
from .config import EVAL_CHUNK

__all__ = ["StackedMLP", "StackedOptimizer", "PARAMETERS"]

#: The stacked parameters, in order, with the axis that indexes the runs.
PARAMETERS = {"stem_w": 0, "stem_b": 0, "hidden_w": 1, "hidden_b": 1, "out_w": 0, "out_b": 0}


def _per_run(values: torch.Tensor, name: str, ndim: int) -> torch.Tensor:
    """``values`` (R,) shaped to broadcast against parameter ``name`` (run axis 0 or 1)."""
    shape = [1] * ndim
    shape[PARAMETERS[name]] = -1
    return values.reshape(shape)


class StackedMLP:
    """The parameters of R same-shaped critical MLPs, trained as one batched model.

    ``params``: the six tensors of :data:`PARAMETERS` (leaf tensors requiring gradients);
    ``activation``: the elementwise activation module (the same for every run);
    ``input_q``: None, or (R, 1, 1) the mean square each run's
    :class:`isometry.torch.InputNormalization` scales every example to (``input_eps``: its eps).
    """

    def __init__(self, params: dict[str, torch.Tensor], activation: nn.Module, input_q: torch.Tensor | None = None,
                 input_eps: float = 1e-30):
        if set(params) != set(PARAMETERS):
            raise ValueError(f"params must be {', '.join(PARAMETERS)}, got {', '.join(params)}")
        self.params = params
        self.activation = activation
        self.input_q = input_q
        self.input_eps = float(input_eps)

    @classmethod
    def from_models(cls, models: Sequence[nn.Sequential], depth: int, device: torch.device | str = "cpu"
                    ) -> "StackedMLP":
        """Stack ``models`` (stem, ``depth`` x (Linear, phi), readout, as built by ``build_mlp``; all
        with or all without an :class:`isometry.torch.InputNormalization` first)."""
        if not models:
            raise ValueError("models must not be empty")
        normalized = isinstance(models[0][0], InputNormalization)
        for m in models:
            if isinstance(m[0], InputNormalization) != normalized or len(m) != 2 * depth + 2 + normalized:
                raise ValueError(f"a model of {len(m)} modules is not {'an input normalisation, ' if normalized else ''}"
                                 f"a stem, {depth} critical layers and a readout")
        input_q, eps = None, 1e-30
        if normalized:
            eps = float(models[0][0].eps)
            input_q = torch.tensor([float(m[0].q) for m in models], dtype=torch.float32, device=device).reshape(-1, 1, 1)
            models = [m[1:] for m in models]
        with torch.no_grad():
            def stack(get, axis=0):
                return torch.stack([get(m) for m in models], dim=axis).to(device).contiguous()

            params = {
                "stem_w": stack(lambda m: m[0].weight.t()),
                "stem_b": stack(lambda m: m[0].bias[None, :]),
                "hidden_w": torch.stack([stack(lambda m, i=i: m[1 + 2 * i].weight.t()) for i in range(depth)]),
                "hidden_b": torch.stack([stack(lambda m, i=i: m[1 + 2 * i].bias[None, :]) for i in range(depth)]),
                "out_w": stack(lambda m: m[-1].weight.t()),
                "out_b": stack(lambda m: m[-1].bias[None, :]),
            }
        for p in params.values():
            p.requires_grad_(True)
        return cls(params, models[0][2], input_q, input_eps=eps)

    @property
    def runs(self) -> int:
        return int(self.params["stem_w"].shape[0])

    def forward(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None,
                input_q: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (R, B, C) of inputs ``x`` (R, B, d): each run's model on its own rows (``params``,
        ``input_q``: those of a subset of the runs, default all)."""
        p = self.params if params is None else params
        q = self.input_q if params is None else input_q
        if q is not None:  # InputNormalization's forward, per run
            x = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True).clamp_min(self.input_eps) / q)
        h = torch.baddbmm(p["stem_b"], x, p["stem_w"])
        for w, b in zip(p["hidden_w"].unbind(0), p["hidden_b"].unbind(0)):
            h = self.activation(torch.baddbmm(b, h, w))
        return torch.baddbmm(p["out_b"], h, p["out_w"])

    def subset(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters of the runs ``idx`` (detached copies)."""
        return {k: v.detach().index_select(PARAMETERS[k], idx) for k, v in self.params.items()}

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None) -> list[float]:
        """Per run (of ``idx``, default all): the fraction of ``x`` (n, d) classified as ``y`` (n,);
        rows with non-finite logits count as wrong."""
        every = idx is not None and len(idx) == self.runs
        if every and bool((idx == torch.arange(self.runs, device=idx.device)).all()):
            idx = None  # every run, in order: no copy
        p = self.params if idx is None else self.subset(idx)
        q = self.input_q if idx is None or self.input_q is None else self.input_q.index_select(0, idx)
        r = int(p["stem_w"].shape[0])
        correct = torch.zeros(r, dtype=torch.long, device=x.device)
        for i in range(0, len(y), EVAL_CHUNK):
            xs, ys = x[i: i + EVAL_CHUNK], y[i: i + EVAL_CHUNK]
            out = self.forward(xs.expand(r, *xs.shape), p, q)
            ok = (out.argmax(-1) == ys) & torch.isfinite(out).all(-1)
            correct += ok.sum(1)
        n = max(len(y), 1)
        return [c / n for c in correct.tolist()]

    def keep(self, idx: torch.Tensor) -> None:
        """Keep only the runs ``idx`` (in that order)."""
        with torch.no_grad():
            self.params = {k: v.detach().index_select(PARAMETERS[k], idx).requires_grad_(True)
                           for k, v in self.params.items()}
            if self.input_q is not None:
                self.input_q = self.input_q.index_select(0, idx)

    def run_state(self, r: int) -> dict[str, torch.Tensor]:
        """The parameters of run ``r`` alone (copies on the CPU, for a checkpoint)."""
        return {k: v.detach().select(PARAMETERS[k], r).cpu().clone() for k, v in self.params.items()}

    def load_run_state(self, r: int, state: dict[str, torch.Tensor]) -> None:
        """Overwrite run ``r``'s parameters with ``state`` (shapes checked by the caller)."""
        with torch.no_grad():
            for k, v in self.params.items():
                v.select(PARAMETERS[k], r).copy_(state[k])

    def run_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of one run's slice of each parameter."""
        out = {}
        for k, v in self.params.items():
            s = list(v.shape)
            del s[PARAMETERS[k]]
            out[k] = tuple(s)
        return out


#: Per-parameter state buffers of each optimiser.
BUFFERS = {"sgd": (), "momentum": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"),
           "rmsprop": ("square_avg",)}

#: Numbers per group of hidden layers the optimiser updates at once (1 MiB of float32).
UPDATE_CHUNK = 1 << 18

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
RMSPROP_ALPHA = 0.99
RMSPROP_EPS = 1e-8


class StackedOptimizer:
    """One optimiser per run over the stacked parameters of a :class:`StackedMLP`.

    ``kind``: sgd | momentum | adam | rmsprop; ``lr`` and ``momentum``: per-run values (R,).
    ``steps[r]``: the updates run r has taken (Adam's bias correction).
    """

    def __init__(self, kind: str, model: StackedMLP, lr: Sequence[float], momentum: Sequence[float]):
        if kind not in BUFFERS:
            raise ValueError(f"optimizer must be one of {', '.join(BUFFERS)}, got {kind!r}")
        self.kind = kind
        dev = model.params["stem_w"].device
        self.lr = torch.tensor(list(lr), dtype=torch.float32, device=dev)
        self.momentum = torch.tensor(list(momentum), dtype=torch.float32, device=dev)
        self.steps = [0] * len(self.lr)
        self.state = {k: {b: torch.zeros_like(v, memory_format=torch.contiguous_format) for b in BUFFERS[kind]}
                      for k, v in model.params.items()}

    @torch.no_grad()
    def step(self, model: StackedMLP) -> None:
        """One update of every run from the gradients in ``model.params[...].grad``.

        The hidden weights are updated a few layers at a time (:data:`UPDATE_CHUNK` numbers), so
        that their weights, gradient and buffers stay in the processor's cache through the whole
        update, and a deep stack of small layers does not pay one set of kernel calls per layer
        (the update is elementwise: the grouping does not change any value).
        """
        self.steps = [s + 1 for s in self.steps]
        dev = self.lr.device
        coef = {}
        if self.kind == "adam":
            b1, b2 = ADAM_BETAS
            step_size = torch.tensor([1.0 / (1 - b1 ** s) for s in self.steps], dtype=torch.float32, device=dev)
            coef["step_size"] = step_size * self.lr
            coef["bc2_sqrt"] = torch.tensor([(1 - b2 ** s) ** 0.5 for s in self.steps], dtype=torch.float32,
                                            device=dev)
        for name, p in model.params.items():
            st = self.state[name]
            if name in ("hidden_w", "hidden_b"):  # (L, R, ...): a few layers at a time, run axis 1
                per = {k: _per_run(v, name, p.ndim) for k, v in coef.items()}
                per["lr"] = _per_run(self.lr, name, p.ndim)
                per["momentum"] = _per_run(self.momentum, name, p.ndim)
                k = max(1, UPDATE_CHUNK // max(p[0].numel(), 1))
                for i in range(0, p.shape[0], k):
                    self._update(p[i: i + k], p.grad[i: i + k], {b: t[i: i + k] for b, t in st.items()}, per)
            else:
                per = {k: _per_run(v, name, p.ndim) for k, v in coef.items()}
                per["lr"] = _per_run(self.lr, name, p.ndim)
                per["momentum"] = _per_run(self.momentum, name, p.ndim)
                self._update(p, p.grad, st, per)

    def _update(self, p: torch.Tensor, g: torch.Tensor, st: dict, per: dict) -> None:
        """The update rule of ``torch.optim`` for one tensor, with per-run coefficients ``per``."""
        if self.kind == "sgd":
            p.sub_(per["lr"] * g)
        elif self.kind == "momentum":
            buf = st["momentum_buffer"]
            buf.mul_(per["momentum"]).add_(g)
            p.sub_(per["lr"] * buf)
        elif self.kind == "adam":
            b1, b2 = ADAM_BETAS
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = v.sqrt().div_(per["bc2_sqrt"]).add_(ADAM_EPS)
            p.sub_(torch.div(m, denom, out=denom).mul_(per["step_size"]))
        else:  # rmsprop
            sq = st["square_avg"]
            sq.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
            p.sub_(torch.div(g, sq.sqrt().add_(RMSPROP_EPS)).mul_(per["lr"]))

    def keep(self, idx: torch.Tensor) -> None:
        """Keep only the runs ``idx`` (in that order)."""
        sel = idx.tolist()
        self.lr = self.lr.index_select(0, idx)
        self.momentum = self.momentum.index_select(0, idx)
        self.steps = [self.steps[i] for i in sel]
        self.state = {k: {b: t.index_select(PARAMETERS[k], idx) for b, t in bufs.items()}
                      for k, bufs in self.state.items()}

    def run_state(self, r: int) -> dict:
        """Run ``r``'s optimiser state (copies on the CPU, for a checkpoint)."""
        return {"kind": self.kind, "steps": self.steps[r],
                "buffers": {k: {b: t.select(PARAMETERS[k], r).cpu().clone() for b, t in bufs.items()}
                            for k, bufs in self.state.items()}}

    def load_run_state(self, r: int, state: dict) -> None:
        """Overwrite run ``r``'s state with ``state`` (validated by the caller)."""
        self.steps[r] = int(state["steps"])
        for k, bufs in self.state.items():
            for b, t in bufs.items():
                t.select(PARAMETERS[k], r).copy_(state["buffers"][k][b])
