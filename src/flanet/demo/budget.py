"""Time budget of ``flanet demo``: how many training epochs fit into a number of seconds.

``flanet.training.train`` stops on an epoch count (it has no wall-clock limit), so the demo
measures, on the machine it runs on, what one optimisation step and one validation frame cost,
and derives the number of epochs that fit the budget. Both models get the same number of
seconds; the cheaper image baseline therefore gets more epochs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from flanet.training.module import FLANetModule


@dataclass(frozen=True)
class StepCost:
    """Measured cost of one model on this machine.

    Attributes:
        train_step_s: one optimisation step (forward, backward, Adam) of a full batch.
        eval_frame_s: inference on one frame (batched, no gradient).
    """

    train_step_s: float
    eval_frame_s: float


def measure_step_cost(config: Mapping[str, Any], repeats: int = 2) -> StepCost:
    """Time training steps and inference of the model of ``config`` on random clips.

    The clips have the shape training uses (``model.num_frames`` frames, one more when the
    contrastive loss needs the previous frame's heatmap), at ``data.image_size`` and
    ``trainer.batch_size``. One warm-up step is not timed.
    """
    module = FLANetModule(dict(config))
    cuda = torch.cuda.is_available() and config["trainer"]["accelerator"] in ("auto", "gpu", "cuda")
    device = torch.device("cuda" if cuda else "cpu")
    model = module.model.to(device).train()
    size, batch = int(config["data"]["image_size"]), int(config["trainer"]["batch_size"])
    frames = model.num_frames + int(module.use_neighbour)
    clip = torch.randn(batch, frames, 3, size, size, device=device)  # (B, T, 3, S, S)

    def clock() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()
    optimiser = torch.optim.Adam(model.parameters(), lr=float(config["optim"]["lr"]))

    def step() -> None:
        out = model.forward_windows(clip) if module.use_neighbour else model(clip)
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

    ``steps_per_epoch`` is below the data's batches per epoch only when not even one full epoch
    fits the budget (``trainer.limit_train_batches``); each epoch still ends with a validation.
    """

    epochs: int
    steps_per_epoch: int
    full_epochs: bool


def plan_training(
    seconds: float,
    cost: StepCost,
    steps_per_epoch: int,
    val_frames: int,
    epoch_overhead_s: float = 1.0,
    run_overhead_s: float = 8.0,
    safety: float = 0.85,
    max_epochs: int = 200,
) -> TrainingPlan:
    """Whole epochs (training + validation) that fit into ``safety * seconds - run_overhead_s``.

    Args:
        seconds: training budget of one model.
        cost: measured step cost.
        steps_per_epoch: optimisation steps of a full epoch.
        val_frames: frames validated after every epoch.
        epoch_overhead_s: fixed cost per epoch (checkpoints, loss-curve plot, data loading).
        run_overhead_s: fixed cost per run (building the model, Lightning start-up).
        safety: fraction of the budget planned for (the rest absorbs timing noise).
        max_epochs: upper bound.

    Returns:
        1 to ``max_epochs`` full epochs; when not even one fits, one epoch shortened to the
        steps that fit (at least one step).
    """
    usable = safety * seconds - run_overhead_s
    fixed = val_frames * cost.eval_frame_s + epoch_overhead_s  # per epoch, besides training steps
    epochs = math.floor(usable / (steps_per_epoch * cost.train_step_s + fixed))
    if epochs >= 1:
        return TrainingPlan(min(max_epochs, epochs), steps_per_epoch, True)
    steps = max(1, math.floor((usable - fixed) / cost.train_step_s))
    return TrainingPlan(1, min(steps, steps_per_epoch), steps >= steps_per_epoch)
