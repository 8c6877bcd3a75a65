"""The residual report part at the quick scale: its figures and checks."""

from __future__ import annotations

import pytest

from isometry.report.core import Context
from isometry.report.residual_part import residual_part


@pytest.mark.slow
def test_residual_part_quick(tmp_path):
    res = residual_part(Context(out=tmp_path, scale="quick", progress=False))
    assert res.name == "residual" and len(res.figures) == 2 and len(res.captions) == 2
    for f in res.figures:
        assert (tmp_path / "figures").exists() and f.endswith(".png")
    failed = [c.claim for c in res.checks if not c.passed]
    assert not failed, failed
    assert len(res.checks) >= 16
    # the plain ReLU network is rejected at every depth; the units agree at large depth, not at depth 4
    assert all(v["rejects_plain"] for k, v in res.data.items() if k.startswith("relu-"))
    u = res.data["universality"]
    assert u["pairwise"] < u["pairwise_depth_4"]
