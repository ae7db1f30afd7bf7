"""How many worker processes scoring uses (``--jobs`` of ``flanet evaluate`` and ``flanet compare``)."""

from __future__ import annotations

from flanet.threads import available_cpus


def default_jobs() -> int:
    """Worker processes for scoring: the CPUs this process may use (affinity, cgroup quota), minus one, at most 8."""
    return max(1, min(8, available_cpus() - 1))
