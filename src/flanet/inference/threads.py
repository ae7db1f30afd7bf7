"""Thread counts and OpenMP wait policy that hold up on a shared CPU.

Two things collapse CPU inference on a machine that other processes share:

* more compute threads than the CPUs the process may actually use. ``os.cpu_count()`` counts the
  host's CPUs, not those of the process's affinity mask or of its cgroup CPU quota (containers,
  ``taskset``, Slurm); :func:`available_cpus` takes the smallest of the three;
* OpenMP threads that spin while waiting for each other: when one of them is descheduled by a
  competing process, the others burn their time slices waiting at the next barrier.
  :data:`SPIN_ENV` caps the spinning (``GOMP_SPINCOUNT=3000``: libgomp spins that many iterations,
  a few microseconds, then sleeps on a futex; 30000 still lost 0.68 of the throughput to one busy
  process, docs/benchmarks.md). libgomp reads it when it is loaded, i.e. when
  ``torch`` is imported, so :func:`configure_process` must run before that (``flanet`` commands
  do it first thing); a value the user set is kept.

Measured effect: docs/benchmarks.md, "Threads on a shared CPU" (``benchmarks/contention.py``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["SPIN_ENV", "available_cpus", "cgroup_cpu_limit", "configure_process", "set_torch_threads"]

SPIN_ENV = {"GOMP_SPINCOUNT": "3000"}


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPU quota of this process's cgroup in CPUs (quota / period), or None without a limit.

    Reads cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) of the process's
    own cgroup, else cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1 = none).
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    v2 = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), None)
    for folder in ([root / v2.lstrip("/"), root] if v2 is not None else [root]):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    for folder in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def available_cpus() -> int:
    """CPUs this process can use: affinity mask, cgroup quota (rounded up) and cpu_count, smallest."""
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    quota = cgroup_cpu_limit()
    if quota is not None:
        counts.append(max(1, math.ceil(quota)))
    return max(1, min(counts))


def configure_process(environ: dict[str, str] | None = None) -> None:
    """Set the OpenMP settings of :data:`SPIN_ENV` and ``OMP_NUM_THREADS`` unless already set.

    Call before ``torch`` is imported (libgomp reads them once, when it is loaded).
    """
    env = os.environ if environ is None else environ
    for key, value in {**SPIN_ENV, "OMP_NUM_THREADS": str(available_cpus())}.items():
        env.setdefault(key, value)


def set_torch_threads(threads: int | None = None) -> int:
    """Give torch ``threads`` intra-op threads (default :func:`available_cpus`); returns the count."""
    import torch

    count = threads or available_cpus()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
