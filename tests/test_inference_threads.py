"""Thread counts from the CPUs really available: affinity mask and cgroup quota (v1, v2)."""

from __future__ import annotations

import os
from pathlib import Path

from flanet.inference import threads


def test_cgroup_v2_and_v1_quotas(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/job\n")
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path, proc) == 1.5
    (tmp_path / "job" / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path, proc) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(v1, tmp_path / "none") == 3.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(v1, tmp_path / "none") is None


def test_available_cpus_takes_the_smallest_limit(monkeypatch) -> None:
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.5)
    assert threads.available_cpus() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.available_cpus() == len(os.sched_getaffinity(0))
    env = {"GOMP_SPINCOUNT": "7"}
    threads.configure_process(env)
    assert env == {"GOMP_SPINCOUNT": "7", "OMP_NUM_THREADS": str(len(os.sched_getaffinity(0)))}
