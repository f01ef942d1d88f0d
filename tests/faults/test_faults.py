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
def test_fault(fid, tmp_path, request):
    group, title, build = FAULTS[fid]
    case = build(tmp_path)
    if case.exit_within is not None or case.max_seconds is not None or \
            case.context is not None or group == "live":
        request.getfixturevalue("busy")  # a deadline, a live peer: both cores kept busy
    verify(case, tmp_path)


def test_the_busy_fixture_keeps_both_cores_busy(busy):
    """What the timing cases run under: /proc/stat's busy time over half a second."""
    import os
    import time

    def ticks() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    busy_before, all_before = ticks()
    time.sleep(0.5)
    busy_after, all_after = ticks()
    share = (busy_after - busy_before) / max(all_after - all_before, 1)
    assert share > 0.9 * min(len(busy), os.cpu_count()) / os.cpu_count(), share


def test_matrix_covers_every_group_with_at_least_60_faults():
    groups = {group for group, _, _ in FAULTS.values()}
    assert groups == {"config", "input", "live", "output", "resources", "sharing", "signals",
                      "untrusted"}
    assert len(FAULTS) >= 60
