"""Thread counts and OpenMP wait policy that hold up on a shared CPU.

Two things collapse CPU inference on a machine that other processes share:

* more compute threads than the CPUs the process may actually use. ``os.cpu_count()`` counts the
  host's CPUs, not those of the process's affinity mask or of its cgroup CPU quota (containers,
  ``taskset``, Slurm); :func:`available_cpus` takes the smallest of the three;
* OpenMP threads that spin while waiting for each other: when one of them is descheduled by a
  competing process, the others burn their time slices waiting at the next barrier.

Two remedies, for two kinds of work:

* streaming (``flanet predict``, ``flanet bench``): :class:`AdaptiveThreads` gives torch as many
  threads as there are CPUs that other processes leave free, measured every half second, so one
  competing process drops the stream to one thread (no barrier to wait at) and an idle machine
  gets every CPU with libgomp's own spinning, which on the project's VM streams at 1.2x the frame
  rate of capped spinning (docs/benchmarks.md);
* every other command: :data:`SPIN_ENV` caps the spinning (``GOMP_SPINCOUNT=3000``: libgomp spins
  that many iterations, then sleeps on a futex; 30000 still lost 0.68 of the throughput to one
  busy process, docs/benchmarks.md). libgomp reads it when it is loaded, i.e. when ``torch`` is
  imported, so :func:`configure_process` must run before that (``flanet`` commands do it before
  their work starts); a value the user set is kept.

Measured effect: docs/benchmarks.md, "Threads on a shared CPU" (``benchmarks/contention.py``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Collection
from pathlib import Path

__all__ = ["SPIN_ENV", "AdaptiveThreads", "available_cpus", "cgroup_cpu_limit", "configure_process",
           "set_torch_threads"]

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


def configure_process(environ: dict[str, str] | None = None, *, cap_spinning: bool = True) -> None:
    """Set ``OMP_NUM_THREADS`` and, with ``cap_spinning``, :data:`SPIN_ENV`, unless already set.

    Call before ``torch`` is imported (libgomp reads them once, when it is loaded).

    Args:
        environ: environment to complete (default ``os.environ``).
        cap_spinning: False for streaming commands, whose :class:`AdaptiveThreads` handles a
            competing process by using fewer threads, so libgomp keeps its faster default spinning.
    """
    env = os.environ if environ is None else environ
    for key, value in {**(SPIN_ENV if cap_spinning else {}), "OMP_NUM_THREADS": str(available_cpus())}.items():
        env.setdefault(key, value)


def set_torch_threads(threads: int | None = None) -> int:
    """Give torch ``threads`` intra-op threads (default :func:`available_cpus`); returns the count."""
    import torch

    count = threads or available_cpus()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def _busy_ticks(stat: Path, cpus: Collection[int]) -> int | None:
    """Busy clock ticks (user, nice, system, irq, softirq) of ``cpus`` in ``/proc/stat``; None if unreadable.

    Idle, iowait and steal (time the hypervisor gave to other machines) are not busy time of this
    machine's processes; guest time is already part of user time.
    """
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    busy, found = 0, set()
    for line in lines:
        name, *fields = line.split() or [""]
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus and len(fields) >= 7:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
            busy += user + nice + system + irq + softirq
            found.add(int(name[3:]))
    return busy if found == set(cpus) else None


class AdaptiveThreads:
    """Torch's intra-op thread count following the CPUs that other processes leave free (Linux).

    Each :meth:`update` at least ``interval`` seconds after the last sample reads the busy time of
    the CPUs this process may run on (their ``cpuN`` lines in ``/proc/stat``) and this process's own
    CPU time; the difference is what other processes used, in CPUs. The free CPUs,
    ``len(cpus) - others``, rounded, at least 1 and at most ``max_threads``, become the thread count
    once two samples in a row ask for the same change (one burst does not flip it). Where
    ``/proc/stat`` cannot be read it does nothing.

    Args:
        max_threads: most threads to use (default: torch's thread count now).
        interval: seconds between samples.
        cpus: CPUs this process may run on (default: its affinity mask).
        stat: the ``/proc/stat`` file.
        clock: monotonic wall clock, seconds.
        cpu_time: this process's CPU time (all threads), seconds.
        set_threads: applies a thread count (default ``torch.set_num_threads``).
    """

    def __init__(self, max_threads: int | None = None, interval: float = 0.5, *, cpus: Collection[int] | None = None,
                 stat: Path = Path("/proc/stat"), clock: Callable[[], float] = time.monotonic,
                 cpu_time: Callable[[], float] = time.process_time,
                 set_threads: Callable[[int], None] | None = None) -> None:
        import torch

        self.initial = torch.get_num_threads()
        self.max_threads = max(1, max_threads or self.initial)
        self.threads = self.initial
        self.interval = interval
        linux = hasattr(os, "sched_getaffinity") and hasattr(os, "sysconf")  # elsewhere: no /proc/stat either
        self.cpus = frozenset(cpus if cpus is not None else os.sched_getaffinity(0) if linux else ())
        self._stat, self._clock, self._cpu_time = stat, clock, cpu_time
        self._set_threads = set_threads or torch.set_num_threads
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._pending: int | None = None
        self._sample = self._read() if self.cpus else None
        self.enabled = self._sample is not None

    def _read(self) -> tuple[float, int, float] | None:
        busy = _busy_ticks(self._stat, self.cpus)
        return None if busy is None else (self._clock(), busy, self._cpu_time())

    def others(self, old: tuple[float, int, float], new: tuple[float, int, float]) -> float:
        """CPUs used by other processes between two samples ``(wall, busy ticks, own CPU seconds)``."""
        wall = new[0] - old[0]
        return max(0.0, ((new[1] - old[1]) / self._tick - (new[2] - old[2])) / wall)

    def update(self) -> int:
        """Sample when ``interval`` has passed and apply a confirmed change; returns the thread count."""
        if not self.enabled or self._sample is None or self._clock() - self._sample[0] < self.interval:
            return self.threads
        sample = self._read()
        if sample is None:
            self.enabled = False
            return self.threads
        free = len(self.cpus) - self.others(self._sample, sample)
        self._sample = sample
        wanted = min(self.max_threads, max(1, math.floor(free + 0.5)))
        if wanted != self.threads and wanted == self._pending:
            self._set_threads(wanted)
            self.threads = wanted
        self._pending = wanted if wanted != self.threads else None
        return self.threads

    def restore(self) -> None:
        """Give torch back the thread count it had when this object was made."""
        if self.threads != self.initial:
            self._set_threads(self.initial)
            self.threads = self.initial
