"""benchmarks/compare_authors.py: ratios to the authors' model are paired within a round."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_authors.py"


def _module():
    spec = importlib.util.spec_from_file_location("compare_authors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_pairs_each_ratio_with_the_authors_run_of_the_same_round() -> None:
    module = _module()
    # the machine drifts: the authors' model runs at 1, 2 then 4 frames/s; every flanet row at 6, 14, 20
    authors = [1.0, 2.0, 4.0]
    mine = [6.0, 14.0, 20.0]
    results = [{"allocator": "default", "config": name, "round": r, "peak_rss_mb": 100.0 + r,
                "fps": authors[r] if name.startswith("authors") else mine[r]}
               for r in range(3) for name in module.CONFIGS]
    rows = {row["config"]: row for row in module._summary(results, ("default",))}
    streaming = rows["flanet, streaming, compiled"]
    assert streaming["rounds_x_authors"] == [6.0, 7.0, 5.0]
    assert streaming["x_authors"] == 6.0  # a ratio of medians would say 14 / 2 = 7
    assert streaming["fps"] == 14.0 and streaming["peak_rss_mb"] == 102.0
    assert rows["authors, clip-by-clip"]["x_authors"] == 1.0
