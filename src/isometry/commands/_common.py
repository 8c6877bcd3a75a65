"""Shared argument helpers for the subcommands.

Conventions of every verb: the activation positional is ``ACTIVATION``; the one output flag is
``-o/--out PATH`` (a figure or an array file here; a directory for train, sweep and reproduce);
``--json`` prints only JSON on stdout, status lines (``wrote FILE``) then go to stderr;
``--no-progress`` turns progress bars off (they are drawn on stderr, and only on a terminal).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, TextIO


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

    p.add_argument("activation", metavar="ACTIVATION", help=f"activation: one of {', '.join(ACTIVATIONS)}")
    p.add_argument("--alpha", type=float, metavar="A", default=None, help="negative slope of leaky_relu / alpha of elu")


def add_out_arg(p: argparse.ArgumentParser, text: str, default: str | None = None) -> None:
    """The output flag of a verb that writes one file: ``-o/--out PATH`` (``args.out``)."""
    p.add_argument("-o", "--out", default=default, metavar="PATH", help=text)


def out_dir(text: str) -> str:
    """argparse type of a directory output (``-o/--out DIR``): a non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an output directory must be a non-empty path")
    return text


def add_json_arg(p: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json``: only JSON on stdout (status lines go to stderr)."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout (status lines go to stderr)")


def status_stream(args: argparse.Namespace) -> TextIO:
    """Where status lines go: stderr under ``--json`` (stdout holds only the JSON), else stdout."""
    return sys.stderr if getattr(args, "json", False) else sys.stdout


def check_output_path(path: str | None, flag: str) -> None:
    """Refuse (``ValueError``) an output file that cannot be written, before any work is done."""
    if path is None:
        return
    if path == "" or os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # the writer creates missing folders: check the first existing one
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot write in {parent} (permission denied)")


def resolve_activation(args: argparse.Namespace):
    from ..activations import get_activation

    params = {} if getattr(args, "alpha", None) is None else {"alpha": args.alpha}
    return get_activation(args.activation, **params)


def print_json(obj: Any) -> None:
    """Print ``obj`` as strict JSON (:func:`isometry._io.to_jsonable`: NumPy values made Python,
    NaN/inf made null)."""
    from .._io import to_jsonable

    print(json.dumps(to_jsonable(obj), indent=2, allow_nan=False))


def add_experiment_args(p: argparse.ArgumentParser) -> None:
    """The grid options of a named training experiment (``train`` and ``sweep``)."""
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the reduced grid (about a minute; for CI)")
    size.add_argument("--paper-scale", action="store_true",
                      help="the paper's sizes: L=200, N=400, CIFAR-10, 1e5 steps (for GPUs)")
    p.add_argument("--data", choices=("mnist1d", "digits", "cifar10"), default=None,
                   help="dataset (default: digits at CPU sizes, cifar10 at paper scale)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory holding the CIFAR-10 python batches (data_batch_1..5, test_batch)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per setting (default: the grid's)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: the grid's)")
    p.add_argument("--target", type=float, default=None, metavar="ACC",
                   help="target test accuracy in (0, 1] (default: per dataset)")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """How the runs are executed (:func:`isometry.sweeps.run_tasks`)."""
    p.add_argument("--engine", choices=("local", "ray", "sequential"), default="local",
                   help="local: a process pool on this machine (one worker: in this process); ray: Ray core tasks; "
                        "sequential: one run after the other in this process")
    p.add_argument("--max-parallel", type=int, default=None, metavar="N",
                   help="runs in flight at once (default: CPUs / --num-cpus locally, what the cluster fits on Ray)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join: 'auto', 'HOST:6379' or 'ray://HOST:10001' (default: start a local one)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs (and BLAS/torch threads) per run")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per run on Ray (fractions share a GPU)")
    p.add_argument("--retries", type=int, default=2, help="restarts of a run whose worker died")


def engine_kwargs(args: argparse.Namespace) -> dict:
    """The execution options of :func:`add_engine_args` as keyword arguments."""
    return dict(engine=args.engine, max_parallel=args.max_parallel, address=args.address, num_cpus=args.num_cpus,
                num_gpus=args.num_gpus, retries=args.retries)
