"""Length of ``flanet demo``: a fixed number of optimisation steps, and the time it should take.

Both models train the same number of steps on the same data in the same order (same seed), so a
seed gives the same report on every machine; the speed of the machine only changes how long the
demo takes. Before training, the demo times a few steps of each model on this machine
(:func:`measure_step_cost`, which does not touch the training runs' random state: every run seeds
itself) and prints the expected duration (:func:`expected_seconds`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from flanet.training.module import FLANetModule
from flanet.training.schema import TrainConfig


@dataclass(frozen=True)
class StepCost:
    """Measured cost of one model on this machine.

    Attributes:
        train_step_s: one optimisation step (forward, backward, Adam) of a full batch.
        eval_frame_s: inference on one frame (batched, no gradient).
    """

    train_step_s: float
    eval_frame_s: float


def measure_step_cost(config: TrainConfig, repeats: int = 2) -> StepCost:
    """Time training steps and inference of the model of ``config`` on random clips.

    The clips have the shape training uses (``model.num_frames`` frames, one more when the
    contrastive loss needs the previous frame's heatmap), at ``data.image_size`` and
    ``data.batch_size``. One warm-up step is not timed.
    """
    module = FLANetModule(config)
    cuda = torch.cuda.is_available() and config.trainer.accelerator in ("auto", "gpu", "cuda")
    device = torch.device("cuda" if cuda else "cpu")
    model = module.model.to(device).train()
    size, batch = config.data.image_size, config.data.batch_size
    frames = model.num_frames + int(module.use_previous)
    clip = torch.randn(batch, frames, 3, size, size, device=device)  # (B, T, 3, S, S)

    def clock() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.optim.lr)

    def step() -> None:
        out = model.forward_windows(clip) if module.use_previous else model(clip)
        loss = out.mask_logits.float().square().mean()
        if out.heatmap is not None:
            loss = loss + out.heatmap.float().square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    step()
    start = clock()
    for _ in range(repeats):
        step()
    train_step = (clock() - start) / repeats
    model.eval()
    with torch.inference_mode():
        eval_clip = clip[:, : model.num_frames]
        model(eval_clip)
        start = clock()
        model(eval_clip)
        eval_frame = (clock() - start) / batch
    return StepCost(train_step, eval_frame)


@dataclass(frozen=True)
class TrainingPlan:
    """How long one model trains: ``epochs`` of ``steps_per_epoch`` optimisation steps.

    ``steps_per_epoch`` is below the data's batches per epoch when fewer steps than one epoch
    were asked for (``trainer.limit_train_batches``); every epoch ends with a validation.
    """

    epochs: int
    steps_per_epoch: int
    full_epochs: bool

    @property
    def steps(self) -> int:
        """Optimisation steps of the whole run."""
        return self.epochs * self.steps_per_epoch


def plan_steps(steps: int, batches_per_epoch: int) -> TrainingPlan:
    """Whole epochs that make ``steps`` optimisation steps (as nearly as whole epochs allow).

    ``epochs = ceil(steps / batches_per_epoch)`` epochs of ``round(steps / epochs)`` steps each;
    when ``steps`` is a multiple of ``batches_per_epoch`` these are full epochs and exactly
    ``steps`` steps. Depends on nothing but its arguments, so it is the same on every machine.

    Raises:
        ValueError: ``steps`` or ``batches_per_epoch`` below 1.
    """
    if steps < 1 or batches_per_epoch < 1:
        raise ValueError(f"steps ({steps}) and batches per epoch ({batches_per_epoch}) must be at least 1")
    epochs = math.ceil(steps / batches_per_epoch)
    per_epoch = min(batches_per_epoch, max(1, round(steps / epochs)))
    return TrainingPlan(epochs, per_epoch, per_epoch == batches_per_epoch)


def expected_seconds(
    cost: StepCost, plan: TrainingPlan, val_frames: int, test_frames: int,
    epoch_overhead_s: float = 1.0, run_overhead_s: float = 8.0,
) -> float:
    """Expected seconds to train one model with ``plan`` and evaluate it on ``test_frames``.

    ``run_overhead_s + epochs * (steps_per_epoch * train_step_s + val_frames * eval_frame_s +
    epoch_overhead_s) + test_frames * eval_frame_s``: Lightning start-up, training steps, the
    validation after every epoch (with checkpoints and the loss plot) and the test-set inference.
    """
    per_epoch = plan.steps_per_epoch * cost.train_step_s + val_frames * cost.eval_frame_s + epoch_overhead_s
    return run_overhead_s + plan.epochs * per_epoch + test_frames * cost.eval_frame_s


def expected_diagnosis_seconds(
    eval_frame_s: float, epochs: int, videos: dict[str, int], frames: int, eval_frames: int, video_frames: int,
    epoch_overhead_s: float = 0.7, run_overhead_s: float = 8.0,
) -> float:
    """Expected seconds of the demo's diagnosis stage: a head trained on the frozen model, then scored.

    The demo does not augment, so the frozen model reads each clip once and keeps its inputs
    (:class:`flanet.training.diagnosis.DiagnosisModule`): of each ``train`` video the clips its bags of
    ``frames`` draw over the epochs (at most its ``video_frames``), of each ``val`` video ``eval_frames``,
    forward only (``eval_frame_s`` per clip); then the ``test`` videos are read once. Every epoch adds
    ``epoch_overhead_s`` (the head's steps, checkpoints, the loss plot): ``run_overhead_s + epochs *
    epoch_overhead_s + (train * min(video_frames, epochs * frames) + (val + test) * eval_frames) *
    eval_frame_s``, ``videos`` giving the video count of each split.
    """
    reads = videos["train"] * min(video_frames, epochs * frames) + (videos["val"] + videos["test"]) * eval_frames
    return run_overhead_s + epochs * epoch_overhead_s + reads * eval_frame_s
