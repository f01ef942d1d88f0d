"""The fault matrix (../shared/RELIABILITY.md section c): one table, one subprocess per case."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import cases_config  # noqa: E402,F401 - each module registers its faults
import cases_input  # noqa: E402,F401
import cases_live  # noqa: E402,F401
import cases_output  # noqa: E402,F401
import cases_sharing  # noqa: E402,F401
import cases_signals  # noqa: E402,F401
import cases_untrusted  # noqa: E402,F401
from harness import FAULTS, verify  # noqa: E402


@pytest.mark.parametrize("fid", sorted(FAULTS, key=lambda f: (f[0], len(f), f)))
def test_fault(fid, tmp_path):
    group, title, build = FAULTS[fid]
    case = build(tmp_path)
    verify(case, tmp_path)


def test_matrix_covers_every_group_with_at_least_60_faults():
    groups = {group for group, _, _ in FAULTS.values()}
    assert groups == {"config", "input", "live", "output", "resources", "sharing", "signals",
                      "untrusted"}
    assert len(FAULTS) >= 60
