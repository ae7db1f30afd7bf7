"""Training samples that encode each frame once: runs of ``L`` consecutive frames (:class:`SequenceDataset`).

A random clip (:class:`~flanet.data.clips.ClipDataset`) holds the frames ``[t, t-1, t-2]`` (and ``t-3``
for the t-1 heatmap of eq. 1) of *one* target frame ``t``, so every target costs 3 (4) encoder
passes and each frame of a video goes through the encoder 3 (4) times an epoch. A *run* holds the
frames ``[e, e-1, ..., e-L-C+1]`` of one video, current first as a clip, where ``C`` is the context
a window needs (``num_frames - 1``, plus 1 with the previous heatmap). The model encodes its
``L + C`` frames once and decodes the windows of the ``L`` frames ``e, ..., e-L+1`` (and of
``e-L`` for its ``H_{t-1}``) by gathering (:func:`flanet.models.windows.gather_windows`): each of
those ``L`` frames that is a target frame gets exactly the window, the targets and the ``t-1``
heatmap it gets as a random clip (paper eqs. 1-2), so the loss over the same targets is the same.

An epoch partitions every video's frames into runs ``[s, s + L)``, ``s = 0, L, 2L, ...`` (the last run
of a video is moved back to end at its last frame; frames an earlier run already covered are not
its targets, so every target frame is a target exactly once an epoch), and keeps the runs with a
target frame. Frames without annotation inside a run are context, as in a clip. One augmentation
is drawn per run (the frames of a clip share theirs too). Only the causal edge policy is possible:
the windows of a run share its frames, so a window near the video start cannot look ahead.
"""

from __future__ import annotations

import numpy as np
import torch

from flanet.data.augment import IDENTITY, add_noise, apply_photometric, sample_transform
from flanet.data.clips import ClipDataset, clip_frame_indices
from flanet.data.images import normalise, resize_rgb
from flanet.data.videoset import VideoSet

#: Per-window keys of a run sample (first dimension ``L``, current window first).
WINDOW_KEYS: tuple[str, ...] = ("mask", "heatmap", "bbox", "has_lesion", "has_mask", "target", "frame_index")


class SequenceDataset(ClipDataset):
    """Runs of ``run_length`` consecutive frames: the targets of up to ``L`` frames for ``L + C`` encoded frames.

    A sample holds ``frames`` ``(L + C, 3, S, S)``, current (latest) first; per window ``w`` (frame
    ``e - w``, ``w = 0..L-1``) the keys of :data:`WINDOW_KEYS` stacked along a first dimension ``L``
    (``target``: whether window ``w`` is a target of this run; the other keys as a clip's); with
    ``with_previous`` also ``prev_distinct`` and ``prev_lesion_free`` of each window's frame ``t-1``;
    and ``video``, ``video_index``, ``orig_size`` of the run's video. ``len()`` counts runs.

    Args:
        video_set, split, image_size, clip_len, augment, with_previous, heatmap_sigma, box_targets,
            augment_config, seed, heatmap_centre: as :class:`~flanet.data.clips.ClipDataset`.
        run_length: ``L``, consecutive frames decoded per run (>= 1).
        edge: must be ``"causal"`` (see module docstring).
    """

    def __init__(self, video_set: VideoSet, split: str | None = "train", *, run_length: int,
                 edge: str = "causal", **clip_options: object) -> None:
        if run_length < 1:
            raise ValueError(f"run_length must be >= 1, got {run_length}")
        if edge != "causal":
            raise ValueError(f"runs of consecutive frames need the causal edge policy, got edge={edge!r}")
        self.run_length = int(run_length)
        super().__init__(video_set, split, edge=edge, **clip_options)  # type: ignore[arg-type]
        self.targets_per_frame = self.samples  # (N, 2) target frames, as a ClipDataset has them
        self.runs = self._runs()
        self.length = self.run_length + self.clip_len - 1 + int(self.with_previous)

    def _runs(self) -> np.ndarray:
        """(R, 3) int64 ``(video position, last frame e, first frame this run covers)`` of the runs with a target."""
        rows = []
        for position, video in enumerate(self.videos):
            frames = self.targets_per_frame[self.targets_per_frame[:, 0] == position, 1]
            n, size = video.num_frames, self.run_length
            starts = np.arange(0, n, size)
            ends = np.minimum(starts + size - 1, n - 1)
            # a run's targets: its covered frames [start, end] that are target frames
            counts = np.searchsorted(frames, ends, side="right") - np.searchsorted(frames, starts, side="left")
            keep = counts > 0
            rows.append(np.stack([np.full(keep.sum(), position), ends[keep], starts[keep]], axis=1))
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def target_count(self) -> int:
        """Target frames over all runs (each is a target of exactly one run)."""
        return len(self.targets_per_frame)

    def __getitem__(self, item: int) -> dict[str, object]:
        position, end, first = (int(v) for v in self.runs[item])
        video = self.videos[position]
        indices = clip_frame_indices(end, video.num_frames, self.length, self.edge)  # current first, clamped at 0
        unique, inverse = np.unique(indices, return_inverse=True)
        decoded = {int(i): self._read_frame(video, int(i)) for i in unique}
        shape = decoded[end].shape[:2]
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, item])
            transform = sample_transform(rng, self.image_size, self.augment_config)
            warped = np.stack([self._transform_image(decoded[i], transform) for i in decoded])
            frames = normalise(add_noise(apply_photometric(warped, transform)[inverse], transform.noise_std, rng))
        else:
            transform = IDENTITY
            frames = normalise(np.stack([resize_rgb(decoded[i], self.image_size) for i in decoded])[inverse])
        windows = end - np.arange(self.run_length)  # frame of each window, current first (may be < 0)
        is_target = np.zeros(video.num_frames, dtype=bool)
        is_target[self.targets_per_frame[self.targets_per_frame[:, 0] == position, 1]] = True
        target = (windows >= first) & is_target[np.maximum(windows, 0)]
        needed = np.unique(np.maximum(end - np.arange(self.run_length + int(self.with_previous)), 0))
        per_frame = {int(i): self._targets(video, int(i), decoded[int(i)].shape[:2], transform) for i in needed}
        clamped = np.maximum(windows, 0)
        sample: dict[str, object] = {"frames": frames}
        for key in ("mask", "heatmap", "bbox", "has_lesion", "has_mask"):
            sample[key] = torch.stack([per_frame[int(i)][key] for i in clamped])
        sample["target"] = torch.from_numpy(target)
        sample["frame_index"] = torch.from_numpy(clamped.astype(np.int64))
        if self.with_previous:  # the t-1 of each window, as ClipDataset's prev_* flags
            previous = np.maximum(windows - 1, 0)
            sample["prev_distinct"] = torch.from_numpy(windows - 1 >= 0)
            sample["prev_lesion_free"] = torch.tensor(
                [video.known_mask(int(p)) and not bool(per_frame[int(p)]["has_lesion"]) for p in previous])
        sample.update(video=video.id, video_index=position, orig_size=torch.tensor(shape, dtype=torch.int64))
        return sample
