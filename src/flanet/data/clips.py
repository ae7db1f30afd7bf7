"""Clip sampling for training and evaluation: :class:`ClipDataset`.

For a target frame ``t`` (a frame with a mask) a sample holds the frames ``[t, t-1, t-2]``
(current first, the order the model expects), the mask, heatmap and bbox of ``t`` and its
identity. With ``box_targets`` (models with the localisation branch), frames with a lesion box
but no mask (box-only sets such as CVA-Net's, docs/data.md) are targets too: their heatmap comes
from the box (paper Section 3.2) and ``has_mask`` is False, so the mask terms of the loss skip
them; frames an annotation file lists as lesion-free get an empty mask (``has_mask`` True), and
frames with neither mask, box nor such a statement stay context only. Edge policy before the first frame of a video:

- ``"causal"`` (default): index ``t-k < 0`` becomes 0, the first frame is repeated; this is what a
  live stream can do.
- ``"lookahead"``: index ``t-k < 0`` becomes ``t+k`` (the authors' released code), clamped to the
  last frame.

With ``with_previous=True`` a sample holds ``[t, t-1, t-2, t-3]``, so the model's
``forward_windows`` gives the predictions for ``t`` and ``t-1`` while encoding each frame once
(contrastive loss, paper Eq. 1); the negative comes from another video of the batch
(:func:`flanet.losses.nearest_other_video`). Eq. (1) compares the *predicted* heatmap of ``t-1``: the previous frame is
an input, not a target, so the target frames are the same with or without it (a previous frame
without a mask is fine). The sample says whether ``t-1`` is a usable positive: ``prev_distinct``
(False at the first frame of a video under the causal policy, where "t-1" repeats t) and
``prev_lesion_free`` (t-1 is annotated and shows no lesion).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from flanet.data.augment import (
    IDENTITY,
    AugmentConfig,
    ClipTransform,
    add_noise,
    apply_photometric,
    frame_matrix,
    sample_transform,
    transform_box,
    warp,
)
from flanet.data.bboxes import NO_BOX, mask_bbox
from flanet.data.errors import DataError
from flanet.data.images import normalise, read_mask, resize_rgb
from flanet.data.targets import bbox_center, gaussian_heatmap
from flanet.data.video_io import VideoFrameReader
from flanet.data.videoset import Video, VideoSet
from flanet.defaults import IMAGE_SIZE

EDGE_POLICIES: tuple[str, ...] = ("causal", "lookahead")


def clip_frame_indices(t: int, num_frames: int, length: int, edge: str = "causal") -> np.ndarray:
    """Frame indices ``[t, t-1, ..., t-length+1]`` with the edge policy applied at the video start."""
    if edge not in EDGE_POLICIES:
        raise ValueError(f"edge must be one of {EDGE_POLICIES}, got {edge!r}")
    offsets = np.arange(length)
    indices = t - offsets
    fallback = np.zeros_like(indices) if edge == "causal" else np.minimum(t + offsets, num_frames - 1)
    return np.where(indices < 0, fallback, indices)


#: Where a frame with a mask takes its heatmap centre from (``data.heatmap_centre``).
HEATMAP_CENTRES: tuple[str, ...] = ("mask", "box")


class ClipDataset(Dataset):
    """Clips of ``clip_len`` frames with the targets of their current frame.

    Args:
        video_set: from :func:`flanet.data.discover`.
        split: split name, or None for every video.
        image_size: side ``S`` of the square model input.
        clip_len: frames per clip (3 for FLA-Net, 1 for image baselines).
        augment: draw a random augmentation per clip (training).
        edge: ``"causal"`` or ``"lookahead"`` (see module docstring).
        with_previous: add frame ``t-clip_len`` and the flags ``prev_distinct`` and
            ``prev_lesion_free`` of ``t-1`` (the target frames do not change).
        heatmap_sigma: std in pixels (at ``S x S``) of the heatmap Gaussian.
        heatmap_centre: where a frame with a mask centres its heatmap: ``"mask"`` (the centre of
            the mask's bounding box, the paper's Section 3.2) or ``"box"`` (the frame's box from
            ``bbox.json`` / a box file when it has one, else the mask's). Box-only frames use their box.
        box_targets: frames with a box but no mask, and frames annotated lesion-free, are targets
            (see module docstring); False: only frames with a mask, and a box-only split is refused.
        augment_config: augmentation ranges (defaults: :class:`AugmentConfig`).
        seed: with ``augment``, the draws of clip ``i`` in epoch ``e`` come from the random
            generator seeded by ``(seed, e, i)`` (see :meth:`set_epoch`): the same in any
            DataLoader worker and after a resume, whatever the order clips are read in.
        video_targets: per video id, its diagnosis targets ``(values (L,), known (L,))``
            (:func:`flanet.data.labels.binary_targets`); each sample then carries them as
            ``diagnosis_target`` and ``diagnosis_known`` (a video not named: nothing known).

    Raises:
        DataError: when the set has error-level problems, the split is unknown, no frame is a target,
            or (without ``box_targets``) the split is box-only.
    """

    def __init__(
        self,
        video_set: VideoSet,
        split: str | None = "train",
        image_size: int = IMAGE_SIZE,
        clip_len: int = 3,
        augment: bool = False,
        edge: str = "causal",
        with_previous: bool = False,
        heatmap_sigma: float = 5.0,
        box_targets: bool = False,
        augment_config: AugmentConfig | None = None,
        seed: int = 0,
        heatmap_centre: str = "mask",
        video_targets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        if edge not in EDGE_POLICIES:
            raise ValueError(f"edge must be one of {EDGE_POLICIES}, got {edge!r}")
        if heatmap_centre not in HEATMAP_CENTRES:
            raise ValueError(f"heatmap_centre must be one of {HEATMAP_CENTRES}, got {heatmap_centre!r}")
        self.heatmap_centre = heatmap_centre
        if clip_len < 1 or image_size < 1 or heatmap_sigma <= 0:
            raise ValueError("clip_len and image_size must be >= 1 and heatmap_sigma > 0")
        errors = [note for note in video_set.notes if note.severity == "error"]
        if errors:
            raise DataError(f"{errors[0]} (and {len(errors) - 1} more; run `flanet data check`)", video_set.root)
        if not box_targets:
            video_set.ensure_masks(split, "training or scoring a model without the localisation branch")
        self.box_targets = box_targets
        self.videos: list[Video] = video_set.subset(split)
        self.image_size, self.clip_len, self.edge = image_size, clip_len, edge
        self.augment, self.with_previous, self.heatmap_sigma = augment, with_previous, heatmap_sigma
        self.augment_config = augment_config or AugmentConfig()
        self.seed, self.epoch = int(seed), 0
        self.length = clip_len + 1 if with_previous else clip_len
        self.samples = self._target_frames()
        if len(self.samples) == 0:
            what = "a mask or a lesion box" if box_targets else "a mask"
            raise DataError(f"split {split!r} has no frame with {what} to train or evaluate on", video_set.root)
        self._video_reader = VideoFrameReader()
        self.video_targets = video_targets

    def _target_frames(self) -> np.ndarray:
        """(N, 2) int64 ``(video position, frame index)`` of every usable target frame."""
        rows = []
        for position, video in enumerate(self.videos):
            target = np.array([mask is not None for mask in video.masks], dtype=bool)
            if self.box_targets:
                target |= np.array([video.known_mask(i) for i in range(len(video.masks))], dtype=bool)
                target[video.box_only_frames()] = True
            targets = np.flatnonzero(target)
            rows.append(np.stack([np.full_like(targets, position), targets], axis=1))
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws :meth:`__getitem__` makes."""
        self.epoch = int(epoch)

    def _read_frame(self, video: Video, index: int) -> np.ndarray:
        return video.read_frame(index, self._video_reader)

    def _transform_image(self, image: np.ndarray, transform: ClipTransform) -> np.ndarray:
        """Resize to ``S x S`` (see :func:`resize_rgb`), then apply the clip's geometry when it has one."""
        resized = resize_rgb(image, self.image_size)
        return resized if transform.is_identity else warp(resized, transform.geometry, self.image_size)

    def _targets(
        self, video: Video, index: int, shape: tuple[int, int], transform: ClipTransform
    ) -> dict[str, torch.Tensor]:
        """Mask, heatmap, bbox, has_lesion and has_mask of frame ``index`` at the output resolution.

        A frame without a mask gets an empty mask target: its mask is known (``has_mask``) when it
        is annotated lesion-free, unknown for a box-only frame, whose heatmap comes from its box.
        """
        size = self.image_size
        matrix = frame_matrix(transform, shape[0], shape[1], size)
        given = video.bboxes[index] if video.bboxes is not None else None
        mask_path = video.masks[index]
        if mask_path is None:
            out_mask = np.zeros((size, size), dtype=bool)
            box = transform_box(given, matrix, size) if given is not None else None
        else:
            mask = read_mask(mask_path)
            if mask.shape != shape:
                frame = video.video_file or video.frames[index]
                found, expected = f"{mask.shape[1]}x{mask.shape[0]}", f"{shape[1]}x{shape[0]}"
                raise DataError(f"mask size {found} differs from its frame's {expected} ({frame})", mask_path)
            out_mask = self._transform_image(mask.astype(np.uint8) * 255, transform) > 127
            box = None
            if out_mask.any():  # the paper: the centre of the mask's bounding box
                use_given = given is not None and self.heatmap_centre == "box"
                box = transform_box(given, matrix, size) if use_given else None
                box = box or mask_bbox(out_mask)
        heatmap = gaussian_heatmap(bbox_center(box) if box else None, size, size, self.heatmap_sigma)
        return {
            "mask": torch.from_numpy(out_mask.astype(np.float32))[None],
            "heatmap": torch.from_numpy(heatmap)[None],
            "bbox": torch.tensor(box or NO_BOX, dtype=torch.float32),
            "has_lesion": torch.tensor(box is not None),
            "has_mask": torch.tensor(video.known_mask(index)),
        }

    def __getitem__(self, item: int) -> dict[str, object]:
        position, t = (int(v) for v in self.samples[item])
        video = self.videos[position]
        indices = clip_frame_indices(t, video.num_frames, self.length, self.edge)
        unique, inverse = np.unique(indices, return_inverse=True)
        decoded = {int(i): self._read_frame(video, int(i)) for i in unique}
        shape = decoded[t].shape[:2]
        size = self.image_size
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, item])
            transform = sample_transform(rng, size, self.augment_config)
            warped = np.stack([self._transform_image(decoded[i], transform) for i in decoded])
            clip = apply_photometric(warped, transform)[inverse]  # (T, S, S, 3) uint8
            frames = normalise(add_noise(clip, transform.noise_std, rng))
        else:
            transform = IDENTITY
            frames = normalise(np.stack([resize_rgb(decoded[i], size) for i in decoded])[inverse])
        sample: dict[str, object] = {"frames": frames}  # (T, 3, S, S)
        sample.update(self._targets(video, t, shape, transform))
        if self.with_previous:
            previous = int(indices[1])
            lesion_free = video.known_mask(previous) and not bool(
                self._targets(video, previous, decoded[previous].shape[:2], transform)["has_lesion"]
            )
            sample["prev_distinct"] = torch.tensor(previous != t)
            sample["prev_lesion_free"] = torch.tensor(lesion_free)
        if self.video_targets is not None:
            width = len(next(iter(self.video_targets.values()))[0]) if self.video_targets else 0
            values, known = self.video_targets.get(video.id, (np.zeros(width, np.float32), np.zeros(width, bool)))
            sample["diagnosis_target"] = torch.from_numpy(np.asarray(values, np.float32))
            sample["diagnosis_known"] = torch.from_numpy(np.asarray(known, bool))
        sample.update(
            video=video.id,
            video_index=position,
            frame_index=t,
            orig_size=torch.tensor(shape, dtype=torch.int64),
        )
        return sample
