"""Thread counts from the CPUs really available: affinity mask and cgroup quota (v1, v2)."""

from __future__ import annotations

import os
from pathlib import Path

from flanet import threads


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


def test_streaming_commands_keep_libgomp_spinning() -> None:
    env: dict[str, str] = {}
    threads.configure_process(env, cap_spinning=False)
    assert "GOMP_SPINCOUNT" not in env and env["OMP_NUM_THREADS"] == str(threads.available_cpus())
    from flanet.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["predict", "scan.mp4", "--checkpoint", "best.pt", "--out", "o"]).streaming
    assert parser.parse_args(["bench"]).streaming
    assert not parser.parse_args(["export", "--checkpoint", "best.pt", "--out", "o"]).streaming


TICK = os.sysconf("SC_CLK_TCK")


class FakeMachine:
    """/proc/stat of CPUs 0 and 1 (and a CPU 2 outside the affinity mask) plus this process's CPU time."""

    def __init__(self, path: Path) -> None:
        self.path, self.wall, self.own, self.busy = path, 0.0, 0.0, 0.0
        self.write()

    def write(self) -> None:
        ticks = round(self.busy * TICK)
        user, system = ticks - ticks // 4, ticks // 4  # busy ticks split over user and system of cpu0
        self.path.write_text(
            "cpu  1 1 1 1 1 1 1 1 0 0\n"
            f"cpu0 {user} 0 {system} 500 7 0 0 900 0 0\n"
            "cpu1 0 0 0 500 0 0 0 900 0 0\n"
            "cpu2 99999 0 0 0 0 0 0 0 0 0\n"
        )

    def run(self, seconds: float, own_cpus: float, other_cpus: float) -> None:
        self.wall += seconds
        self.own += seconds * own_cpus
        self.busy += seconds * (own_cpus + other_cpus)
        self.write()


def test_busy_ticks_count_only_the_affinity_cpus_and_no_idle_or_steal(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu0 10 2 3 1000 50 4 5 700 9 0\ncpu1 1 0 0 10 0 0 0 0 0 0\ncpu2 500 0 0 0 0 0 0 0 0 0\n")
    assert threads._busy_ticks(stat, {0, 1}) == 10 + 2 + 3 + 4 + 5 + 1
    assert threads._busy_ticks(stat, {0, 3}) is None  # a CPU of the mask is missing
    assert threads._busy_ticks(tmp_path / "none", {0}) is None


def test_adaptive_threads_follow_the_free_cpus_after_two_agreeing_samples(tmp_path: Path, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # torch's count when the stream starts
    machine = FakeMachine(tmp_path / "stat")
    applied: list[int] = []
    adaptive = threads.AdaptiveThreads(None, 0.5, cpus={0, 1}, stat=machine.path, clock=lambda: machine.wall,
                                       cpu_time=lambda: machine.own, set_threads=applied.append)
    assert adaptive.threads == adaptive.max_threads == 2
    machine.run(0.5, own_cpus=2.0, other_cpus=0.0)
    assert adaptive.update() == 2 and applied == []
    machine.run(0.5, own_cpus=1.3, other_cpus=0.7)  # one competing process: 1.3 CPUs free -> 1 thread
    assert adaptive.update() == 2  # first sample asking for it
    machine.run(0.2, own_cpus=1.3, other_cpus=0.7)
    assert adaptive.update() == 2  # before the interval: no sample
    machine.run(0.3, own_cpus=1.3, other_cpus=0.7)
    assert adaptive.update() == 1 and applied == [1]
    machine.run(0.5, own_cpus=1.0, other_cpus=1.0)
    assert adaptive.update() == 1
    machine.run(0.5, own_cpus=1.0, other_cpus=0.0)  # one quiet sample between busy ones: no flip
    assert adaptive.update() == 1
    machine.run(0.5, own_cpus=1.0, other_cpus=1.0)
    assert adaptive.update() == 1
    machine.run(0.5, own_cpus=1.0, other_cpus=0.02)  # the competitor ended
    assert adaptive.update() == 1
    machine.run(0.5, own_cpus=1.0, other_cpus=0.02)
    assert adaptive.update() == 2 and applied == [1, 2]
    machine.run(0.5, own_cpus=1.0, other_cpus=1.0)
    machine.run(0.5, own_cpus=1.0, other_cpus=1.0)
    adaptive.update()
    machine.run(0.5, own_cpus=1.0, other_cpus=1.0)
    assert adaptive.update() == 1
    adaptive.restore()  # the stream ended: torch gets its 2 threads back
    assert applied == [1, 2, 1, 2] and adaptive.threads == 2


def test_adaptive_threads_do_nothing_without_proc_stat(tmp_path: Path) -> None:
    applied: list[int] = []
    adaptive = threads.AdaptiveThreads(2, 0.0, cpus={0}, stat=tmp_path / "none", set_threads=applied.append)
    assert not adaptive.enabled
    assert adaptive.update() == adaptive.threads and applied == []


def test_adaptive_threads_see_a_real_busy_process() -> None:
    import subprocess
    import sys
    import time

    adaptive = threads.AdaptiveThreads(interval=0.0, set_threads=lambda n: None)
    assert adaptive.enabled
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        before = adaptive._read()
        time.sleep(1.0)
        after = adaptive._read()
    finally:
        competitor.kill()
        competitor.wait()
    assert before is not None and after is not None
    assert 0.6 <= adaptive.others(before, after) <= len(adaptive.cpus) + 0.1


def test_adaptive_threads_do_nothing_without_cpus_to_watch(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("\ncpu0 1 0 0 1 0 0 0 0 0 0\n")  # a blank line does not trip the parser
    assert threads._busy_ticks(stat, {0}) == 1
    adaptive = threads.AdaptiveThreads(2, 0.0, cpus=(), stat=stat, set_threads=lambda n: None)
    assert not adaptive.enabled and adaptive.update() == adaptive.threads
