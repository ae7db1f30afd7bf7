"""``run_demo``: synthetic data -> train FLA-Net and UNet -> evaluate -> stream -> report.

Output folder::

    data/                 synthetic breast-ultrasound videos (authors' layout, contact_sheet.png)
    runs/<model>/         training run folders (config.yaml, checkpoints/best.pt, metrics.csv, ...)
    evaluation/<model>/   ``flanet evaluate`` reports on the test videos
    runs/diagnosis/       the benign/malignant head trained on the frozen FLA-Net (flanet.demo.diagnosis)
    streaming/            ``flanet predict`` output on one test video (overlay.mp4, masks, frames.csv)
    figures/              the report's PNGs and overlay.gif
    metrics.json          every number of the report
    report.html           self-contained report (figures embedded); report.md (figures linked)
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flanet import __version__
from flanet.data import VideoSet, discover
from flanet.data.synth import generate_dataset
from flanet.demo.budget import (
    StepCost,
    TrainingPlan,
    expected_diagnosis_seconds,
    expected_seconds,
    measure_step_cost,
    plan_steps,
)
from flanet.demo.cases import build_cases, pick_cases
from flanet.demo.compare import aligned_dice, compare_by_frame_kind, read_frame_kinds
from flanet.demo.diagnosis import DIAGNOSIS_EPOCHS, train_and_score
from flanet.demo.figures import (
    overlay_video_to_gif,
    plot_cases,
    plot_frame_kind_dice,
    plot_per_video_dice,
    plot_training_curves,
    read_step_losses,
)
from flanet.demo.report import verdict, write_report
from flanet.evaluation import EvaluationSettings, evaluate_checkpoint
from flanet.fileio import atomic_write_text, prepare_output_folder
from flanet.inference import predict_to_folder
from flanet.metrics import names
from flanet.models import load_checkpoint
from flanet.training import load_config, train
from flanet.training.callbacks import read_metrics
from flanet.training.schema import TrainConfig

DEMO_CONFIG = "demo"
MODELS: dict[str, tuple[str, str]] = {  # label -> (display name, input)
    "flanet": ("FLA-Net", "3 frames"),
    "unet": ("UNet", "current frame"),
}
REPORTED_METRICS = (*names.STANDARD, "s_alpha", "e_phi_mean", "max_dice")
DEFAULT_STEPS = 990  # 11 epochs of the default data (90 batches of 4): about 10 minutes on 2 idle cores (docs/demo.md)
OTHER_STAGES_S = 30.0  # data generation, streaming, figures and report on 2 cores (measured, docs/demo.md)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo builds and how long it trains.

    Attributes:
        steps: optimisation steps of each model (same for both, whole epochs: see
            :func:`flanet.demo.budget.plan_steps`); with the seed they fix every number of the report.
        seed: seed of the data, the training runs and the bootstrap.
        videos / frames / frame_size: synthetic data set size (4:2:4 train/val/test by video).
        image_size: model input side (multiple of 32); None = the ``demo`` recipe's.
        encoder: timm encoder of both models (random init); None = the recipe's.
        resamples: bootstrap resamples of the 95% intervals.
        diagnosis_epochs: epochs of the benign/malignant head on the frozen FLA-Net (:mod:`flanet.demo.diagnosis`).
        progress: progress bars.
    """

    steps: int = DEFAULT_STEPS
    seed: int = 0
    videos: int = 30
    frames: int = 30
    frame_size: int = 128
    image_size: int | None = None
    encoder: str | None = None
    resamples: int = 2000
    diagnosis_epochs: int = DIAGNOSIS_EPOCHS
    progress: bool = True


def machine_description() -> dict[str, Any]:
    """Where the demo ran: device, CPU cores and torch threads."""
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return {"device": "cuda" if cuda else "cpu", "description": device, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__}


class _Stages:
    """Numbered progress lines on stdout and the seconds each stage took."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total, self.say, self.count = total, say, 0
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def run(self, name: str, message: str, work: Callable[[], Any]) -> Any:
        self.count += 1
        self.say(f"[{self.count}/{self.total}] {message} (elapsed {time.perf_counter() - self.start:.0f} s)")
        begin = time.perf_counter()
        value = work()
        self.seconds[name] = time.perf_counter() - begin
        return value

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def _demo_config(label: str, root: Path, out: Path, settings: DemoSettings) -> TrainConfig:
    """The ``demo`` recipe for one model of the demo."""
    overrides = [f"data.root={root}", f"model.name={label}", f"seed={settings.seed}",
                 f"output.run_dir={out / 'runs' / label}", f"trainer.enable_progress_bar={str(settings.progress).lower()}"]
    if settings.image_size is not None:
        overrides.append(f"data.image_size={settings.image_size}")
    if settings.encoder is not None:
        overrides.append(f"model.encoder={settings.encoder}")
    return load_config(DEMO_CONFIG, overrides)


@dataclass(frozen=True)
class _Plan:
    """One model's training plan, its measured step cost and expected seconds."""

    config: TrainConfig
    plan: TrainingPlan
    cost: StepCost
    expected_s: float


def _plan_models(root: Path, out: Path, settings: DemoSettings, say: Callable[[str], None]) -> dict[str, _Plan]:
    """Fix both models' steps (from ``settings.steps`` only) and time a few steps to predict the duration."""
    video_set = discover(root)
    plans = {}
    for label in MODELS:
        config = _demo_config(label, root, out, settings)
        frames = {split: sum(m is not None for v in video_set.subset(name) for m in v.masks)
                  for split, name in (("train", config.data.train_split), ("val", config.data.val_split),
                                      ("test", "test"))}
        plan = plan_steps(settings.steps, max(1, frames["train"] // config.data.batch_size))
        cost = measure_step_cost(config)
        plans[label] = _Plan(config, plan, cost, expected_seconds(cost, plan, frames["val"], frames["test"]))
        say(f"    {MODELS[label][0]}: {plan.steps} steps ({plan.epochs} epoch(s) of {plan.steps_per_epoch}); "
            f"{cost.train_step_s:.2f} s per step here -> about {plans[label].expected_s / 60:.1f} min")
    return plans


def _train_one(label: str, planned: _Plan, out: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Train one model for its planned steps; returns its run record."""
    plan = planned.plan
    overrides = [f"trainer.max_epochs={plan.epochs}"]
    if not plan.full_epochs:
        overrides.append(f"trainer.limit_train_batches={plan.steps_per_epoch}")
    begin = time.perf_counter()
    run_dir = train(planned.config, overrides)
    train_s = time.perf_counter() - begin
    say(f"    {MODELS[label][0]}: trained {plan.steps} steps in {train_s:.0f} s")
    history = read_metrics(run_dir / "metrics.csv")
    scored = [r for r in history if r.get("val_dice") is not None]
    best = max(scored, key=lambda r: r["val_dice"]) if scored else None
    config = planned.config
    return {
        "run_dir": str(run_dir.relative_to(out)), "epochs": plan.epochs, "full_epochs": plan.full_epochs,
        "steps": int(history[-1]["step"]) if history else 0, "planned_steps": plan.steps,
        "train_s": train_s, "train_step_s": planned.cost.train_step_s, "expected_s": planned.expected_s,
        "best_epoch": int(best["epoch"]) + 1 if best else None, "best_val_dice": best["val_dice"] if best else None,
        "image_size": config.data.image_size, "encoder": config.model.encoder,
        "batch_size": config.data.batch_size, "lr": config.optim.lr, "history": history,
        "step_history": read_step_losses(run_dir),
    }


def _best_checkpoint(run_dir: Path) -> Path:
    """``best.pt`` (best validation Dice), or ``last.pt`` when no validation score was recorded."""
    best = run_dir / "checkpoints" / "best.pt"
    return best if best.is_file() else run_dir / "checkpoints" / "last.pt"


@dataclass
class _Outcome:
    """What the stages produced, for the figures and ``metrics.json``."""

    runs: dict[str, dict[str, Any]]
    results: dict[str, Any]  # label -> EvaluationResult
    comparison: dict[str, dict[str, Any]]
    kinds: dict[tuple[str, str], str]
    hard_counts: dict[str, int]  # test video -> hard frames
    stream_id: str
    stream_dir: Path


def _draw_figures(out: Path, outcome: _Outcome, models: dict[str, nn.Module], video_set: VideoSet, image_size: int) -> dict[str, str]:
    """Write the report's figures into ``out/figures``; returns their paths relative to ``out``."""
    folder = out / "figures"
    folder.mkdir(exist_ok=True)
    name = {label: MODELS[label][0] for label in MODELS}
    test_ids = list(outcome.hard_counts)
    per_video = {label: {row["video"]: row["dice"] for row in outcome.results[label].per_video} for label in MODELS}
    videos, frames, dice_f, dice_u = aligned_dice(outcome.results["flanet"].per_frame, outcome.results["unet"].per_frame)
    chosen = pick_cases(videos, frames, dice_f, dice_u)
    picks = [(reason, videos[i], frames[i]) for reason, i in chosen]
    dice = {name["flanet"]: [dice_f[i] for _, i in chosen], name["unet"]: [dice_u[i] for _, i in chosen]}
    cases = build_cases({name[label]: model for label, model in models.items()}, video_set, image_size, picks, dice,
                        outcome.kinds)
    paths = {
        "curves": plot_training_curves({name[label]: outcome.runs[label]["history"] for label in MODELS},
                                       {name[label]: outcome.runs[label]["step_history"] for label in MODELS},
                                       folder / "training_curves.png"),
        "per_video": plot_per_video_dice(test_ids, {name[label]: [per_video[label][v] for v in test_ids] for label in MODELS},
                                         [outcome.hard_counts[v] for v in test_ids], folder / "per_video_dice.png"),
        "frame_kinds": plot_frame_kind_dice(outcome.comparison, (name["flanet"], name["unet"]), folder / "dice_by_frame_kind.png"),
        "cases": plot_cases(cases, folder / "cases.png"),
        "gif": overlay_video_to_gif(outcome.stream_dir / "overlay.mp4", folder / "overlay.gif"),
    }
    return {k: str(p.relative_to(out)) for k, p in paths.items()}


def _record(out: Path, settings: DemoSettings, outcome: _Outcome, figures: dict[str, str], split_sizes: dict[str, int]) -> dict[str, Any]:
    """Everything the report shows (written as ``metrics.json``), timing and verdict excluded."""
    summary = json.loads((outcome.stream_dir / "summary.json").read_text(encoding="utf-8"))
    flanet_run = outcome.runs["flanet"]
    return {
        "flanet_version": __version__,
        "settings": {**{k: v for k, v in asdict(settings).items() if k != "progress"},
                     "image_size": flanet_run["image_size"], "encoder": flanet_run["encoder"],
                     "batch_size": flanet_run["batch_size"], "lr": flanet_run["lr"], "split_sizes": split_sizes},
        "machine": machine_description(),
        "models": {label: {
            "display_name": MODELS[label][0], "input": MODELS[label][1],
            **{k: v for k, v in outcome.runs[label].items() if k not in ("history", "step_history")},
            "metrics": {k: outcome.results[label].metrics[k] for k in REPORTED_METRICS},
            "ci": {k: v for k, v in outcome.results[label].metrics["ci"].items() if isinstance(v, list)},
            "per_video_dice": {row["video"]: row["dice"] for row in outcome.results[label].per_video},
            "viewer": f"evaluation/{label}/viewer.html",
        } for label in MODELS},
        "comparison": outcome.comparison,
        "streaming": {"video": outcome.stream_id, "frames": summary["frames"],
                      "hard_frames": outcome.hard_counts[outcome.stream_id], "fps": summary["fps_achieved"],
                      "overlay_video": str((outcome.stream_dir / "overlay.mp4").relative_to(out)), "gif": figures["gif"],
                      "viewer": str((outcome.stream_dir / "viewer.html").relative_to(out))},
        "figures": figures,
    }


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings(), force: bool = False,
             say: Callable[[str], None] = print) -> Path:
    """Run the whole demo into ``out`` and return the path of ``report.html``.

    Raises:
        FileExistsError: see :func:`flanet.fileio.prepare_output_folder`.
    """
    out = prepare_output_folder(out, "demo", force=force)
    stages = _Stages(8, say)
    root = out / "data"
    stages.run("data", f"generating {settings.videos} synthetic ultrasound videos", lambda: generate_dataset(
        root, settings.videos, settings.frames, settings.frame_size, settings.seed, progress=settings.progress))
    video_set = discover(root)
    plans = stages.run("timing", f"timing a few training steps of both models ({settings.steps} steps each)",
                       lambda: _plan_models(root, out, settings, say))
    diagnosis_config = plans["flanet"].config.diagnosis
    expected_diagnosis = expected_diagnosis_seconds(
        plans["flanet"].cost.eval_frame_s, settings.diagnosis_epochs,
        {name: len(video_set.subset(name)) for name in ("train", "val", "test")},
        diagnosis_config.frames, min(diagnosis_config.eval_frames, settings.frames), settings.frames)
    expected = stages.elapsed + sum(p.expected_s for p in plans.values()) + expected_diagnosis + OTHER_STAGES_S
    say(f"    expected duration of the whole demo on this machine: about {expected / 60:.1f} min")
    runs = {label: stages.run(f"train_{label}", f"training {MODELS[label][0]} ({plans[label].plan.steps} steps)",
                              lambda label=label: _train_one(label, plans[label], out, say))
            for label in MODELS}
    checkpoints = {label: _best_checkpoint(out / runs[label]["run_dir"]) for label in MODELS}
    image_size = runs["flanet"]["image_size"]
    evaluation = EvaluationSettings(resamples=settings.resamples, seed=settings.seed, progress=settings.progress)
    results = stages.run("evaluation", "evaluating both models on the test videos", lambda: {
        label: evaluate_checkpoint(checkpoints[label], root, "test", out / "evaluation" / label, image_size=image_size,
                                   method=MODELS[label][0], settings=evaluation) for label in MODELS})
    kinds = read_frame_kinds(root / "frame_info.csv")
    comparison = compare_by_frame_kind(results["flanet"].per_frame, results["unet"].per_frame, kinds,
                                       settings.resamples, settings.seed)
    models = {label: load_checkpoint(checkpoints[label]).model for label in MODELS}
    hard_counts = {video.id: sum(kinds.get((video.id, path.stem), "none") != "none" for path in video.frames)
                   for video in video_set.subset("test")}
    stream_id = max(hard_counts, key=lambda vid: (hard_counts[vid], vid))  # the test video with most hard frames
    stream_dir = stages.run("streaming", f"streaming FLA-Net over test video {stream_id}", lambda: predict_to_folder(
        models["flanet"], root / "img_list" / stream_id, out / "streaming", image_size=image_size, fps=8.0,
        progress=settings.progress))
    diagnosis = stages.run("diagnosis", "training a benign/malignant head on the frozen FLA-Net", lambda: train_and_score(
        out, root, checkpoints["flanet"], video_set, image_size, settings.seed, settings.resamples, settings.progress,
        settings.diagnosis_epochs))
    outcome = _Outcome(runs, results, comparison, kinds, hard_counts, stream_id, Path(stream_dir))
    figures = stages.run("figures", "drawing figures and writing the report",
                         lambda: _draw_figures(out, outcome, models, video_set, image_size))
    record = _record(out, settings, outcome, figures, {name: len(video_set.subset(name)) for name in ("train", "val", "test")})
    record["diagnosis"] = diagnosis
    record["verdict"] = verdict(comparison, (MODELS["flanet"][0], MODELS["unet"][0]))
    record["timing"] = {**{f"{k}_s": v for k, v in stages.seconds.items()},
                        "expected_diagnosis_s": expected_diagnosis, "expected_total_s": expected,
                        "total_s": stages.elapsed}
    atomic_write_text(out / "metrics.json", json.dumps(record, indent=2, default=str) + "\n")
    _, page = write_report(record, out)
    say(f"done in {stages.elapsed:.0f} s: {page}")
    say(record["verdict"]["text"])
    return page
