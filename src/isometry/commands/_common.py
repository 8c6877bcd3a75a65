"""Shared argument helpers for the subcommands."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any


def positive_float(name: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number > 0, got {text!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a finite number > 0, got {text!r}")
        return v

    return parse


def nonneg_float(name: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number >= 0, got {text!r}") from None
        if not math.isfinite(v) or v < 0:
            raise argparse.ArgumentTypeError(f"{name} must be a finite number >= 0, got {text!r}")
        return v

    return parse


def positive_int(name: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {text!r}")
        return v

    return parse


def add_activation_args(p: argparse.ArgumentParser) -> None:
    from ..activations import ACTIVATIONS

    p.add_argument("activation", metavar="ACT", help=f"activation: one of {', '.join(ACTIVATIONS)}")
    p.add_argument("--alpha", type=float, default=None, help="negative slope of leaky_relu / alpha of elu")


def resolve_activation(args: argparse.Namespace):
    from ..activations import get_activation

    params = {} if getattr(args, "alpha", None) is None else {"alpha": args.alpha}
    return get_activation(args.activation, **params)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=_default))


def _default(o):
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)
