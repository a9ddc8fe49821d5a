"""How many CPUs this process may really use: the affinity mask, capped by a cgroup CPU quota.

A container started with `--cpus 2` on a 64-core host still sees 64 CPUs in its affinity
mask; only the cgroup's quota says 2. Sizing workers and pools from the mask alone would
start 64 API processes there.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> int | None:
    """CPUs allowed by the cgroup quota (v2 `cpu.max`, else v1 `cfs_quota_us`), rounded up; None if unlimited."""
    try:
        quota_text, period_text = (root / "cpu.max").read_text().split()[:2]
        if quota_text == "max":
            return None
        quota, period = int(quota_text), int(period_text)
    except (OSError, ValueError):
        try:
            quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def usable_cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)
