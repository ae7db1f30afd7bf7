"""Good and bad cases of the demo: which test frames to show, and the models' maps on them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flanet.data import ClipDataset, VideoSet, read_mask
from flanet.demo.figures import CaseFrame


def pick_cases(
    videos: Sequence[str],
    frames: Sequence[str],
    video_dice: np.ndarray,
    image_dice: np.ndarray,
    per_group: tuple[int, int, int] = (2, 1, 2),
) -> list[tuple[str, int]]:
    """Choose frames to draw: where the temporal model gains most, its best and its worst frames.

    Args:
        videos / frames: (N,) identity of every scored test frame.
        video_dice / image_dice: (N,) Dice of the temporal model and the image baseline.
        per_group: frames of each group (gain, best, worst).

    Returns:
        ``(reason, frame position)`` pairs, no frame twice, in the order gain, best, worst.
    """
    gain = video_dice - image_dice
    groups = (
        ("largest gain over the image model", np.argsort(-gain, kind="stable")),
        ("best frame", np.argsort(-video_dice, kind="stable")),
        ("worst frame", np.argsort(video_dice, kind="stable")),
    )
    chosen: list[tuple[str, int]] = []
    used: set[int] = set()
    for (reason, order), count in zip(groups, per_group):
        picked = [int(i) for i in order if int(i) not in used][:count]
        used.update(picked)
        chosen += [(reason, i) for i in picked]
    return chosen


@torch.inference_mode()
def predict_frames(
    model: nn.Module, video_set: VideoSet, split: str, image_size: int, picks: Sequence[tuple[str, str]]
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Run ``model`` on the causal clips of the picked ``(video, frame stem)`` frames.

    Returns:
        Per pick ``(probability (H, W), heatmap (H, W) or None)`` at the original frame size.
    """
    dataset = ClipDataset(video_set, split=split, image_size=image_size, clip_len=int(model.num_frames), edge="causal")
    position = {video.id: p for p, video in enumerate(dataset.videos)}
    index = {
        (int(p), dataset.videos[int(p)].frames[int(t)].stem): i for i, (p, t) in enumerate(dataset.samples.tolist())
    }
    items = [dataset[index[(position[video], frame)]] for video, frame in picks]
    clip = torch.stack([item["frames"] for item in items])  # (K, T, 3, S, S)
    device = next(model.parameters()).device
    out = model.eval()(clip.to(device))
    results = []
    for k, item in enumerate(items):
        size = tuple(int(s) for s in item["orig_size"].tolist())
        prob = torch.sigmoid(F.interpolate(out.mask_logits[k : k + 1].float(), size=size, mode="bilinear"))
        heat = None
        if out.heatmap is not None:
            heat = F.interpolate(out.heatmap[k : k + 1].float(), size=size, mode="bilinear")[0, 0].cpu().numpy()
        results.append((prob[0, 0].cpu().numpy(), heat))
    return results


def build_cases(
    models: Mapping[str, nn.Module],
    video_set: VideoSet,
    image_size: int,
    picks: Sequence[tuple[str, str, str]],
    dice: Mapping[str, Sequence[float]],
    kinds: Mapping[tuple[str, str], str],
) -> list[CaseFrame]:
    """Frames, truths and every model's maps for the picked ``(reason, video, frame)`` test frames.

    Args:
        models: label -> model; the first one is the temporal model whose heatmap is drawn.
        video_set: the demo data set.
        image_size: model input size.
        picks: ``(reason, video id, frame stem)``.
        dice: label -> Dice of each pick (same order).
        kinds: ``(video, frame) -> hard kind`` of the generator.
    """
    pairs = [(video, frame) for _, video, frame in picks]
    maps = {label: predict_frames(model, video_set, "test", image_size, pairs) for label, model in models.items()}
    by_id = {video.id: video for video in video_set.videos}
    first = next(iter(models))
    cases = []
    for k, (reason, video_id, frame) in enumerate(picks):
        video = by_id[video_id]
        position = next(i for i, path in enumerate(video.frames) if Path(path).stem == frame)
        scores = ", ".join(f"{label} {dice[label][k]:.2f}" for label in models)
        kind = kinds.get((video_id, frame), "none")
        cases.append(CaseFrame(
            title=f"{reason}\n{video_id}/{frame}\nframe kind: {'normal' if kind == 'none' else kind}\nDice: {scores}",
            rgb=video.read_frame(position),
            gt=read_mask(video.masks[position]),  # type: ignore[arg-type]
            probs={label: maps[label][k][0] for label in models},
            heatmap=maps[first][k][1],
        ))
    return cases
