"""Videos as bags of clips, for the video-level diagnosis head (``task: diagnosis``): :class:`VideoBags`.

A diagnosis is made per video (the labels of the paper's Section 2), from several of its frames
(multiple-instance learning: the video is the bag, its frames the instances). One item is one
labelled video: ``frames`` clips ``[t, t-1, t-2]`` of it (the clips of
:class:`~flanet.data.clips.ClipDataset`, causal edge policy), drawn at random for training (seeded
by ``(seed, epoch, item)``) or spread evenly over the video for validation and evaluation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from flanet.data.clips import ClipDataset
from flanet.data.errors import DataError


def spread(count: int, wanted: int) -> np.ndarray:
    """``min(count, wanted)`` positions spread evenly over ``0..count-1`` (first and last included)."""
    if count <= wanted:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, wanted)).astype(int))


class VideoBags(Dataset):
    """One item per labelled video of ``clips``: ``frames (K, T, 3, S, S)``, ``frame_index (K,)``, targets.

    Args:
        clips: the clips of a split, with ``video_targets`` (:class:`ClipDataset`).
        frames: K, clips per video (fewer for a shorter video).
        random: draw the clips at random (training) instead of spreading them.
        seed: seed of the random draws.
        labelled_only: leave out the videos with no known label.

    Raises:
        DataError: no video of the split has a known label.
    """

    def __init__(self, clips: ClipDataset, frames: int, random: bool = False, seed: int = 0,
                 labelled_only: bool = True) -> None:
        if clips.video_targets is None:
            raise ValueError("VideoBags needs clips made with video_targets")
        self.clips, self.frames, self.random, self.seed, self.epoch = clips, int(frames), random, int(seed), 0
        positions = clips.samples[:, 0]
        self.items: list[np.ndarray] = []  # per video, the clip indices of its target frames
        self.videos: list[str] = []
        for position, video in enumerate(clips.videos):
            known = clips.video_targets.get(video.id, (None, np.zeros(0, bool)))[1]
            members = np.flatnonzero(positions == position)
            if members.size and (known.any() or not labelled_only):
                self.items.append(members)
                self.videos.append(video.id)
        if not self.items:
            raise DataError("no video of the split has a known label (labels.csv or benign/ malignant/ folders): "
                            "nothing to train or score a diagnosis on")

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws :meth:`__getitem__` makes."""
        self.epoch = int(epoch)

    def __getitem__(self, item: int) -> dict[str, object]:
        members = self.items[item]
        if self.random:
            rng = np.random.default_rng([self.seed, self.epoch, item])
            chosen = np.sort(rng.choice(members, size=min(self.frames, members.size), replace=False))
        else:
            chosen = members[spread(members.size, self.frames)]
        samples = [self.clips[int(index)] for index in chosen]
        return {
            "frames": torch.stack([torch.as_tensor(sample["frames"]) for sample in samples]),
            "frame_index": torch.tensor([int(sample["frame_index"]) for sample in samples]),
            "diagnosis_target": samples[0]["diagnosis_target"],
            "diagnosis_known": samples[0]["diagnosis_known"],
            "video": self.videos[item],
        }


def collate_bags(items: list[dict[str, object]]) -> dict[str, object]:
    """A batch of bags of different sizes: clips concatenated, ``groups (N,)`` naming each clip's video in the batch."""
    sizes = [len(item["frame_index"]) for item in items]
    return {
        "frames": torch.cat([item["frames"] for item in items]),
        "frame_index": torch.cat([item["frame_index"] for item in items]),
        "groups": torch.repeat_interleave(torch.arange(len(items)), torch.tensor(sizes)),
        "diagnosis_target": torch.stack([item["diagnosis_target"] for item in items]),
        "diagnosis_known": torch.stack([item["diagnosis_known"] for item in items]),
        "video": [item["video"] for item in items],
    }
