"""The reproduction report (`isometry reproduce`)."""

from .core import Check, Context, PartResult, check, run_parts, write_report
from .reproduce import PARTS, reproduce

__all__ = ["Check", "Context", "PartResult", "check", "run_parts", "write_report", "PARTS", "reproduce"]
