"""LightningDataModule: training and validation clips of one data set."""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from flanet.data import ClipDataset, DataError, VideoSet, discover
from flanet.data.sequences import SequenceDataset
from flanet.data.split_record import RECORD_FILE, SplitRecord
from flanet.data.splits import split_alias
from flanet.training.resume import ResumableSampler, batches_done
from flanet.training.schema import DataConfig, TrainConfig

log = logging.getLogger(__name__)

TRAIN, VAL, TEST = "train", "val", "test"


def split_train_val(video_set: VideoSet, data: DataConfig, seed: int) -> VideoSet:
    """The set with splits ``train`` and ``val`` to use (see :func:`choose_splits`)."""
    return choose_splits(video_set, data, seed)[0]


def _is_test_split(name: str) -> bool:
    return name == TEST or split_alias(name) == TEST


def choose_splits(video_set: VideoSet, data: DataConfig, seed: int) -> tuple[VideoSet, SplitRecord]:
    """The splits a run trains on and chooses ``best.pt`` on, by video, and their record.

    Rules (docs/training.md, "Splits"):

    - A set **without split lists** (nor split folders): flanet holds out, by video and seeded,
      ``data.test_fraction`` of the videos for testing and ``data.val_fraction`` for validation; the
      record (``splits.json``, checkpoint metadata) names them, and ``flanet evaluate`` scores only
      those test videos.
    - Otherwise the ``data.train_split`` is trained on; ``data.val_split`` chooses ``best.pt`` when
      the set has it. A test split (``test``, ``Test``, a video-polyp test set) is never a
      validation split. Without a validation split, ``data.val_fraction`` of the training videos
      (at least one) is held out, by video; with a single training video the run trains without
      validation and ``last.pt`` is its checkpoint. An official test split is never touched.

    Raises:
        DataError: unknown training split, a test split named for validation, or too few videos.
    """
    root = str(video_set.root)
    if _is_test_split(data.val_split):
        raise DataError(
            f"data.val_split={data.val_split!r} is a test split: choosing the checkpoint on test videos "
            "makes the test score optimistic. Leave data.val_split=val (without a 'val' split, "
            f"data.val_fraction={data.val_fraction} of the training videos are held out for validation, by video)",
            video_set.split_files.get(data.val_split, video_set.root),
        )
    test_ids: list[str] = []
    if video_set.splits:
        train_split = data.train_split
        train_ids = [v.id for v in video_set.subset(train_split)]  # DataError if unknown
        source = "split lists" if any(p.suffix == ".csv" for p in video_set.split_files.values()) else "split folders"
    else:
        train_split, source = "all", f"held out by flanet (seed {seed}, data.test_fraction={data.test_fraction})"
        train_ids = [v.id for v in video_set.videos]
        held = round(len(train_ids) * data.test_fraction)
        held = max(1, held) if data.test_fraction > 0 else 0
        if held and len(train_ids) - held < 1:
            raise DataError(
                f"no split lists and only {len(train_ids)} video(s): cannot hold a test video out; write split "
                f"lists with `flanet data split {root} --ratios 4:2:4`, or train on all with data.test_fraction=0",
                video_set.root,
            )
        test_ids = sorted(random.Random(f"test-{seed}").sample(train_ids, held))
        train_ids = [i for i in train_ids if i not in set(test_ids)]
        log.warning("%s has no split lists: %d of its %d videos are held out for testing (seed %d, "
                    "data.test_fraction=%s), recorded in the run folder's %s", video_set.root, held,
                    len(video_set.videos), seed, data.test_fraction, RECORD_FILE)
    selection: str | None = data.val_split
    if data.val_split in video_set.splits:
        val_ids = [v.id for v in video_set.subset(data.val_split)]
        overlap = sorted(set(train_ids) & set(val_ids))
        if overlap:
            raise DataError(f"videos in both {data.train_split!r} and {data.val_split!r}: {overlap[:10]}",
                            video_set.split_files.get(data.val_split, video_set.root))
    elif len(train_ids) < 2:
        log.warning("no %r split and %d training video(s): training without validation; the run's checkpoint "
                    "is checkpoints/last.pt (no best.pt)", data.val_split, len(train_ids))
        val_ids, selection = [], None
    else:
        held = max(1, min(len(train_ids) - 1, round(len(train_ids) * data.val_fraction)))
        val_ids = sorted(random.Random(seed).sample(train_ids, held))
        train_ids = [i for i in train_ids if i not in set(val_ids)]
        selection = f"val: held out of the training videos (seed {seed}, data.val_fraction={data.val_fraction})"
        log.info("no %r split: holding out %d of the training videos for validation: %s",
                 data.val_split, held, ", ".join(val_ids[:10]))
    splits = {**video_set.splits, TRAIN: train_ids, VAL: val_ids}
    if test_ids:
        splits[TEST] = test_ids
    record = SplitRecord(root, source, train_split, selection, train_ids, val_ids, test_ids)
    return dataclasses.replace(video_set, splits=splits), record


class VideoDataModule(pl.LightningDataModule):
    """Clips for training (shuffled, seeded per epoch) and validation (in order).

    ``data.batch_size`` is the global batch: each of the ``world_size`` processes gets
    ``batch_size // world_size`` clips per step. With ``data.sequence_length`` the training batches
    hold runs of that many consecutive frames instead of clips (:class:`~flanet.data.sequences.SequenceDataset`).

    Args:
        config: resolved training configuration.
        clip_len: frames per clip of the model (``model.num_frames``).
        with_previous: training clips carry one extra previous frame (contrastive loss).
        box_targets: frames with a lesion box but no mask are targets (models with the
            localisation branch, see :class:`~flanet.data.ClipDataset`); else box-only splits are refused.
        video_set: the data set with its ``train``/``val`` splits chosen (:func:`choose_splits`); by
            default discovered and split in :meth:`setup`.
        video_targets: per video, its diagnosis targets (joint diagnosis head), carried by every clip.
    """

    def __init__(self, config: TrainConfig, clip_len: int, with_previous: bool, box_targets: bool = False,
                 video_set: VideoSet | None = None,
                 video_targets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        super().__init__()
        self.config = config
        self.video_set = video_set  # splits already chosen by choose_splits (else chosen in setup)
        self.clip_len = clip_len
        self.with_previous = with_previous
        self.box_targets = box_targets
        self.video_targets = video_targets
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        # Loader iterators draw their worker seeds from these, not from the global RNG; the
        # training one is saved in the resume checkpoint so a resumed epoch repeats the original.
        self.train_generator = torch.Generator().manual_seed(config.seed)
        self.val_generator = torch.Generator().manual_seed(config.seed)
        self._start: tuple[int, int] = (0, 0)  # (epoch, batches done) a resumed run starts at

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        data = self.config.data
        if data.root is None:
            raise DataError("no dataset given: set data.root=/path/to/dataset")
        video_set = self.video_set or split_train_val(discover(data.root), data, self.config.seed)
        common = dict(image_size=data.image_size, clip_len=self.clip_len, edge=data.edge,
                      heatmap_sigma=data.heatmap_sigma, box_targets=self.box_targets,
                      heatmap_centre=data.heatmap_centre)
        if data.sequence_length is None:  # random clips, one target each (paper)
            self.train_dataset = ClipDataset(video_set, split=TRAIN, augment=data.augment,
                                             with_previous=self.with_previous, seed=self.config.seed,
                                             video_targets=self.video_targets, **common)
        else:  # runs of consecutive frames, each frame encoded once (docs/training.md)
            self.train_dataset = SequenceDataset(video_set, split=TRAIN, augment=data.augment,
                                                 with_previous=self.with_previous, seed=self.config.seed,
                                                 run_length=data.sequence_length, **common)
        if not video_set.splits[VAL]:  # trained without validation (choose_splits): no val loader
            self.val_dataset = None
        else:
            self.val_dataset = ClipDataset(video_set, split=VAL, augment=False, with_previous=False,
                                           video_targets=self.video_targets, **common)
        for name, dataset in ((TRAIN, self.train_dataset), (VAL, self.val_dataset)):
            if dataset is not None and len(dataset) == 0:
                raise DataError(f"the {name} split has no target frame (a mask, or a box)", video_set.root)

    def _per_device_batch(self) -> int:
        batch, world = self.config.data.batch_size, self.trainer.world_size
        if batch % world:
            raise ValueError(f"data.batch_size={batch} is not divisible by the {world} processes")
        return batch // world

    def state_dict(self) -> dict[str, Any]:
        epoch, batches = batches_done(self.trainer)
        return {"train_generator": self.train_generator.get_state(), "epoch": epoch, "batches": batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_generator.set_state(state_dict["train_generator"])
        self._start = (int(state_dict.get("epoch", 0)), int(state_dict.get("batches", 0)))

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        batch = self._per_device_batch()
        world = self.trainer.world_size
        drop_last = train and len(dataset) >= world
        # Seeded by (seed, epoch) and not by the global RNG, so a resumed run sees the same order;
        # a run resumed mid-epoch skips the clips its first part trained on.
        if train:
            epoch, batches = self._start
            sampler: DistributedSampler = ResumableSampler(
                dataset, num_replicas=world, rank=self.trainer.global_rank, shuffle=True,
                seed=self.config.seed, drop_last=drop_last, epoch=epoch, skip=batches * batch)
        else:
            sampler = DistributedSampler(dataset, num_replicas=world, rank=self.trainer.global_rank,
                                         shuffle=False, seed=self.config.seed, drop_last=False)
        return DataLoader(
            dataset, batch_size=batch, sampler=sampler, num_workers=self.config.data.num_workers,
            drop_last=train and len(sampler) >= batch,  # a full batch keeps negatives for eq. (1)
            pin_memory=self.trainer.strategy.root_device.type == "cuda",
            generator=self.train_generator if train else self.val_generator,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return [] if self.val_dataset is None else self._loader(self.val_dataset, train=False)
