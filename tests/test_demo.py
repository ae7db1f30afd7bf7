"""flanet demo: the whole pipeline on a tiny synthetic set, its report, its budget and comparison maths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from flanet.cli import main
from flanet.demo import DemoSettings, run_demo
from flanet.demo.budget import StepCost, TrainingPlan, expected_diagnosis_seconds, expected_seconds, plan_steps
from flanet.demo.compare import paired_dice
from flanet.demo.figures import read_step_losses
from flanet.demo.pipeline import OTHER_STAGES_S
from flanet.demo.report import fmt, fmt_ci, signed
from flanet.fileio import LOCK_NAME, output_marker, prepare_output_folder

TINY = DemoSettings(videos=6, frames=6, frame_size=64, image_size=64, steps=3, resamples=50, diagnosis_epochs=2,
                    progress=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("demo") / "report"
    lines: list[str] = []
    run_demo(out, TINY, say=lines.append)
    return out, lines


def test_demo_writes_every_artefact(demo: tuple[Path, list[str]]) -> None:
    out, lines = demo
    for relative in (
        "report.html", "report.md", "metrics.json", "data/contact_sheet.png", "data/frame_info.csv",
        "runs/flanet/checkpoints/best.pt", "runs/unet/checkpoints/best.pt", "runs/flanet/metrics.csv",
        "evaluation/flanet/metrics.json", "evaluation/unet/metrics.json", "streaming/overlay.mp4",
        "streaming/summary.json", "figures/training_curves.png", "figures/per_video_dice.png",
        "figures/dice_by_frame_kind.png", "figures/cases.png", "figures/overlay.gif",
        "runs/flanet/logs/csv/metrics.csv", "runs/diagnosis/checkpoints/last.pt",
    ):
        assert (out / relative).is_file() and (out / relative).stat().st_size > 0, relative
    assert [line[:5] for line in lines if line.startswith("[")] == [f"[{k}/8]" for k in range(1, 9)]
    assert "## Diagnosis: benign or malignant, per video" in (out / "report.md").read_text()
    assert lines[-2].startswith("done in ")
    timing = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    models = sum(m["expected_s"] for m in timing["models"].values())
    # the printed expectation covers the diagnosis stage too (at least its start-up, 8 s)
    assert timing["timing"]["expected_diagnosis_s"] >= 8.0
    assert timing["timing"]["expected_total_s"] >= models + OTHER_STAGES_S + timing["timing"]["expected_diagnosis_s"]


def test_training_curves_have_every_step(demo: tuple[Path, list[str]]) -> None:
    out, _ = demo
    for label in ("flanet", "unet"):  # one epoch of 3 steps: 3 points, not one dot per epoch
        assert [row["step"] for row in read_step_losses(out / "runs" / label)] == [0.0, 1.0, 2.0]


def test_html_is_self_contained(demo: tuple[Path, list[str]]) -> None:
    out, _ = demo
    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    reliability = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["diagnosis"]["reliability"]
    # frame kinds, curves, per video, cases, overlay GIF, and the diagnosis' reliability plot when it applies
    assert len(sources) == 5 + (reliability is not None)
    assert all(s.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for s in sources)
    assert 'href="streaming/overlay.mp4"' in page
    for viewer in ("evaluation/flanet/viewer.html", "evaluation/unet/viewer.html", "streaming/viewer.html"):
        assert f'href="{viewer}"' in page and (out / viewer).is_file()
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for relative in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (out / relative).is_file(), relative


def test_report_numbers_are_those_of_metrics_json(demo: tuple[Path, list[str]]) -> None:
    out, _ = demo
    record = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    markdown = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    expected = []
    for label in ("flanet", "unet"):
        model = record["models"][label]
        evaluation = json.loads((out / "evaluation" / label / "metrics.json").read_text(encoding="utf-8"))
        assert model["metrics"]["dice"] == evaluation["dice"]  # the evaluation's own numbers
        assert model["ci"]["dice"] == evaluation["ci"]["dice"]
        expected += [f"{fmt(model['metrics'][k])} {fmt_ci(model['ci'][k])}" for k in ("dice", "jaccard", "f1", "mae")]
    for group in record["comparison"].values():
        expected.append(f"{signed(group['difference'])} {fmt_ci(group['difference_ci'])}")
    expected += [record["verdict"]["text"], f"{fmt(record['streaming']['fps'], 1)} frames/s"]
    diagnosis = record["diagnosis"]["scores"]
    expected.append("Diagnosis: benign or malignant, per video")
    if "not_applicable" not in diagnosis:
        expected.append(f"{fmt(diagnosis['auroc'])} {fmt_ci(diagnosis['auroc_ci'])}")
    for text in expected:
        assert text in markdown, text
        assert text in page, text
    everything = record["comparison"]["all"]
    assert everything["difference"] == pytest.approx(everything["video_model"] - everything["image_model"])
    assert everything["frames"] == evaluation["num_frames"]
    assert record["models"]["flanet"]["steps"] == record["models"]["unet"]["steps"] == 3  # same fixed steps


def test_demo_refuses_an_existing_folder(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--force"):
        prepare_output_folder(foreign, "demo", force=False)
    with pytest.raises(FileExistsError, match="not written by `flanet demo`"):
        prepare_output_folder(foreign, "demo", force=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert main(["demo", "--out", str(foreign)]) == 2
    earlier = tmp_path / "earlier"
    prepare_output_folder(earlier, "demo", force=False)
    (earlier / "old.txt").write_text("old")
    assert prepare_output_folder(earlier, "demo", force=True) == earlier.resolve()
    assert sorted(p.name for p in earlier.iterdir()) == sorted([LOCK_NAME, output_marker("demo")])  # one writer


def test_plan_steps_is_whole_epochs_of_the_asked_steps() -> None:
    from flanet.demo import commands, pipeline

    assert commands.DEFAULT_STEPS == pipeline.DEFAULT_STEPS == DemoSettings().steps
    assert plan_steps(1350, 90) == TrainingPlan(15, 90, True)
    assert plan_steps(1350, 90).steps == 1350
    assert plan_steps(3, 90) == TrainingPlan(1, 3, False)  # fewer steps than an epoch
    assert plan_steps(100, 90) == TrainingPlan(2, 50, False)  # ceil(100/90) = 2 epochs of round(100/2)
    assert plan_steps(7, 3) == TrainingPlan(3, 2, False)  # 3 epochs of round(7/3) = 2 -> 6 steps, nearest whole epochs
    with pytest.raises(ValueError, match="at least 1"):
        plan_steps(0, 90)


def test_expected_seconds_counts_steps_validation_overhead_and_test() -> None:
    cost = StepCost(train_step_s=0.5, eval_frame_s=0.01)
    # 8 s start-up + 2 epochs x (20 x 0.5 + 100 x 0.01 + 1) + 50 x 0.01 = 8 + 24 + 0.5
    assert expected_seconds(cost, TrainingPlan(2, 20, True), val_frames=100, test_frames=50) == pytest.approx(32.5)


def test_expected_diagnosis_seconds_counts_each_clip_read_once_and_every_epoch() -> None:
    """The demo's printed duration includes its diagnosis stage (it was left out: 8.2 min printed, 10.6 taken)."""
    videos = {"train": 12, "val": 6, "test": 12}
    # 8 s start-up + 60 epochs x 0.7 s + (12 x min(30, 60 x 8) + (6 + 12) x 30) clips x 0.01 s = 8 + 42 + 9
    assert expected_diagnosis_seconds(0.01, 60, videos, frames=8, eval_frames=30, video_frames=30) == pytest.approx(59)
    # one epoch: a train video's bag reads its 8 drawn clips, not all 30: 8 + 0.7 + (96 + 540) x 0.01
    assert expected_diagnosis_seconds(0.01, 1, videos, frames=8, eval_frames=30, video_frames=30) == pytest.approx(15.06)


def test_paired_dice_means_difference_and_subsets() -> None:
    videos = ["a", "a", "b", "b", "b"]
    temporal = np.array([0.9, 0.8, 0.6, 0.7, 0.5])
    image = np.array([0.7, 0.8, 0.6, 0.4, 0.5])
    scores = paired_dice(videos, temporal, image, resamples=200)
    assert scores.frames == 5 and scores.videos == 2
    assert scores.video_model == pytest.approx(3.5 / 5)
    assert scores.image_model == pytest.approx(3.0 / 5)
    assert scores.difference == pytest.approx(0.1)
    assert scores.difference_ci[0] <= 0.1 <= scores.difference_ci[1]
    hard = paired_dice(videos, temporal, image, np.array([1, 0, 0, 1, 0], bool), resamples=200)
    assert hard.frames == 2 and hard.difference == pytest.approx((0.2 + 0.3) / 2)
    same = paired_dice(videos, temporal, temporal, resamples=200)
    assert same.difference == 0 and same.difference_ci == (0.0, 0.0)
    assert paired_dice(videos, temporal, image, np.zeros(5, bool)) is None
