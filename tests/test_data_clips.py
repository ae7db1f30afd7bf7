"""ClipDataset: frame order, edge policies, targets, augmentation consistency, previous frames, negatives."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flanet.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    ClipDataset,
    DataError,
    clip_frame_indices,
    discover,
    gaussian_heatmap,
    mask_bbox,
)
from flanet.data.augment import add_noise, apply_photometric, sample_transform, transform_box

MEAN = torch.tensor(IMAGENET_MEAN)[:, None, None]
STD = torch.tensor(IMAGENET_STD)[:, None, None]


def _video(root, name="v", n=4, masked=None, box=(2, 2, 5, 5), size=10, frames=None):
    """Frame i is uniform grey 20 * (i + 1) (or ``frames[i]``); masks on ``masked`` frames with ``box``."""
    (root / "img_list" / name).mkdir(parents=True, exist_ok=True)
    (root / "mask_list" / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        frame = frames[i] if frames is not None else np.full((size, size), 20 * (i + 1), np.uint8)
        cv2.imwrite(str(root / "img_list" / name / f"{i}.png"), frame)
        if masked is None or i in masked:
            mask = np.zeros((size, size), np.uint8)
            if box:
                mask[box[1]:box[3], box[0]:box[2]] = 255
            cv2.imwrite(str(root / "mask_list" / name / f"{i}.png"), mask)
    return root


def _grey(frames):
    """Mean grey level (0-255) of each normalised frame (T, 3, S, S)."""
    return ((frames * STD + MEAN) * 255).mean(dim=(1, 2, 3))


@pytest.mark.parametrize("t,n,length,edge,expected", [
    (0, 5, 3, "causal", [0, 0, 0]), (1, 5, 3, "causal", [1, 0, 0]), (4, 5, 3, "causal", [4, 3, 2]),
    (0, 5, 3, "lookahead", [0, 1, 2]), (1, 5, 4, "lookahead", [1, 0, 3, 4]), (0, 2, 3, "lookahead", [0, 1, 1]),
])
def test_clip_frame_indices(t, n, length, edge, expected):
    assert clip_frame_indices(t, n, length, edge).tolist() == expected


def test_frames_are_current_first_and_edges_follow_the_policy(tmp_path):
    video_set = discover(_video(tmp_path))
    causal = ClipDataset(video_set, None, image_size=8)
    lookahead = ClipDataset(video_set, None, image_size=8, edge="lookahead")
    torch.testing.assert_close(_grey(causal[2]["frames"]), torch.tensor([60.0, 40.0, 20.0]), atol=0.5, rtol=0)
    torch.testing.assert_close(_grey(causal[0]["frames"]), torch.tensor([20.0, 20.0, 20.0]), atol=0.5, rtol=0)
    torch.testing.assert_close(_grey(lookahead[0]["frames"]), torch.tensor([20.0, 40.0, 60.0]), atol=0.5, rtol=0)
    with pytest.raises(ValueError, match="edge"):
        ClipDataset(video_set, None, edge="future")


def test_sample_keys_types_and_heatmap_at_the_bbox_centre(tmp_path):
    sample = ClipDataset(discover(_video(tmp_path)), None, image_size=20, heatmap_sigma=3.0)[1]
    assert sample["frames"].shape == (3, 3, 20, 20) and sample["frames"].dtype == torch.float32
    assert sample["mask"].shape == sample["heatmap"].shape == (1, 20, 20)
    assert set(sample["mask"].unique().tolist()) == {0.0, 1.0}
    # mask box (2, 2, 5, 5) in a 10x10 frame -> (4, 4, 10, 10) at 20x20 (bilinear, threshold 0.5)
    assert sample["bbox"].tolist() == [4.0, 4.0, 10.0, 10.0] and bool(sample["has_lesion"])
    assert sample["mask"][0].sum() == 36
    assert sample["heatmap"][0, 6, 6].item() == pytest.approx(math.exp(-0.5 / (2 * 9.0)), abs=1e-6)
    np.testing.assert_allclose(sample["heatmap"][0].numpy(), gaussian_heatmap((7.0, 7.0), 20, 20, 3.0), atol=1e-6)
    assert (sample["video"], sample["video_index"], sample["frame_index"]) == ("v", 0, 1)
    assert sample["orig_size"].tolist() == [10, 10] and sample["orig_size"].dtype == torch.int64


def test_frame_without_lesion_gives_zero_heatmap(tmp_path):
    sample = ClipDataset(discover(_video(tmp_path, box=None)), None, image_size=16)[0]
    assert sample["heatmap"].abs().sum() == 0 and sample["mask"].sum() == 0
    assert sample["bbox"].tolist() == [-1.0] * 4 and not bool(sample["has_lesion"])


def test_heatmap_centre_is_the_mask_box_by_default_and_the_bbox_json_box_on_request(tmp_path):
    """Issue 31 item 7: the paper centres the heatmap on the mask's bounding box (Section 3.2)."""
    root = _video(tmp_path)
    (root / "bbox.json").write_text(json.dumps({"v": {"0.png": [2, 2, 6, 6]}}))
    paper = ClipDataset(discover(root), None, image_size=20, heatmap_sigma=2.0)
    assert paper[0]["bbox"].tolist() == [4.0, 4.0, 10.0, 10.0]  # the mask's box, not bbox.json's
    dataset = ClipDataset(discover(root), None, image_size=20, heatmap_sigma=2.0, heatmap_centre="box")
    assert dataset[0]["bbox"].tolist() == [4.0, 4.0, 12.0, 12.0]
    assert np.unravel_index(dataset[0]["heatmap"][0].argmax().item(), (20, 20)) in {(7, 7), (7, 8), (8, 7), (8, 8)}
    assert dataset[1]["bbox"].tolist() == [4.0, 4.0, 10.0, 10.0]  # no box for frame 1: from its mask


def test_transform_box_of_a_flip():
    flip = np.array([[-1.0, 0.0, 10.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert transform_box((1, 2, 3, 4), flip, 10) == (7.0, 2.0, 9.0, 4.0)
    shift_out = np.array([[1.0, 0.0, 20.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert transform_box((1, 2, 3, 4), shift_out, 10) is None


def test_augmentation_is_identical_across_frames_and_targets(tmp_path):
    mask = np.zeros((24, 24), np.uint8)
    mask[5:14, 8:19] = 255
    root = _video(tmp_path, n=3, box=(8, 5, 19, 14), size=24, frames=[mask] * 3)
    config = AugmentConfig(hflip=0.5, scale=(0.7, 1.3), translate=0.15, rotate=25, brightness=0, contrast=(1, 1),
                           gamma=(1, 1), noise_std=0)
    dataset = ClipDataset(discover(root), None, image_size=32, augment=True, augment_config=config)
    changed = 0
    for epoch in range(6):
        dataset.set_epoch(epoch)
        sample = dataset[2]
        grey = (sample["frames"] * STD + MEAN).mean(dim=1)  # (T, S, S) in [0, 1]
        torch.testing.assert_close(grey[0], grey[1])
        torch.testing.assert_close(grey[0], grey[2])
        agreement = ((grey[0] > 0.5) == (sample["mask"][0] > 0.5)).float().mean()
        assert agreement > 0.99
        box = mask_bbox(sample["mask"][0].numpy() > 0.5)
        assert sample["bbox"].tolist() == list(box)
        peak = np.unravel_index(sample["heatmap"][0].argmax().item(), (32, 32))
        assert abs(peak[1] + 0.5 - (box[0] + box[2]) / 2) <= 0.5 and abs(peak[0] + 0.5 - (box[1] + box[3]) / 2) <= 0.5
        changed += int(box != (12.0, 6.0, 26.0, 18.0))
    assert changed > 0


def test_photometric_augmentation_and_reproducibility(tmp_path):
    dataset = ClipDataset(discover(_video(tmp_path, size=16)), None, image_size=16, augment=True)
    torch.manual_seed(3)
    first = dataset[3]["frames"]
    torch.manual_seed(3)
    torch.testing.assert_close(dataset[3]["frames"], first)
    assert first.shape == (3, 3, 16, 16) and torch.isfinite(first).all()


def test_augmentation_draws_depend_on_seed_epoch_and_clip_only(tmp_path):
    # what a resumed run (or another DataLoader worker) reads must be what the original read
    dataset = ClipDataset(discover(_video(tmp_path, size=16)), None, image_size=16, augment=True, seed=5)
    first = dataset[3]["frames"]
    torch.manual_seed(123)  # the global RNG plays no part
    dataset[1]
    torch.testing.assert_close(dataset[3]["frames"], first, rtol=0, atol=0)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[3]["frames"], first)
    dataset.set_epoch(0)
    torch.testing.assert_close(dataset[3]["frames"], first, rtol=0, atol=0)


def test_noise_is_grey_fresh_per_frame_and_seeded():
    clip = np.full((2, 64, 64, 3), 128, np.uint8)
    noisy = add_noise(clip, 0.03, np.random.default_rng(0))
    assert noisy.dtype == np.uint8 and noisy.shape == clip.shape
    assert (noisy[..., 0] == noisy[..., 2]).all()  # grey: same on the channels
    assert not (noisy[0] == noisy[1]).all()  # fresh per frame
    assert abs(noisy.astype(float).mean() - 128) < 0.5 and 6.0 < noisy.astype(float).std() < 9.3  # std 0.03 * 255
    np.testing.assert_array_equal(add_noise(clip, 0.03, np.random.default_rng(0)), noisy)
    assert add_noise(clip, 0.0, np.random.default_rng(0)) is clip


def test_photometric_lookup_table():
    clip = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    transform = sample_transform(np.random.default_rng(0), 16, AugmentConfig())
    out = apply_photometric(clip, transform).astype(float) / 255
    mean = clip.mean() / 255
    expected = np.clip((clip / 255 - mean) * transform.contrast + mean + transform.brightness, 0, 1) ** transform.gamma
    np.testing.assert_allclose(out, expected, atol=0.5 / 255 + 1e-9)


def test_with_previous_gives_four_frames_and_keeps_every_target(tmp_path):
    root = _video(tmp_path, n=5, masked={0, 1, 3, 4})
    plain = ClipDataset(discover(root), None, image_size=10)
    dataset = ClipDataset(discover(root), None, image_size=10, with_previous=True)
    # the previous frame is an input: frame 3 stays a target although frame 2 has no mask
    assert dataset.samples.tolist() == plain.samples.tolist()
    assert dataset.samples[:, 1].tolist() == [0, 1, 3, 4]
    sample = dataset[3]
    assert sample["frames"].shape == (4, 3, 10, 10)
    torch.testing.assert_close(_grey(sample["frames"]), torch.tensor([100.0, 80.0, 60.0, 40.0]), atol=0.5, rtol=0)
    flags = [(bool(dataset[i]["prev_distinct"]), bool(dataset[i]["prev_lesion_free"])) for i in range(4)]
    # frame 0: "t-1" repeats t (causal edge); frame 3: t-1 unannotated, not known lesion-free
    assert flags == [(False, False), (True, False), (True, False), (True, False)]
    assert "mask_prev" not in sample  # t-1 is never a target


def test_previous_frame_annotated_without_lesion_is_flagged(tmp_path):
    root = _video(tmp_path, n=3, masked={0, 1, 2})
    cv2.imwrite(str(root / "mask_list" / "v" / "1.png"), np.zeros((10, 10), np.uint8))  # frame 1: no lesion
    dataset = ClipDataset(discover(root), None, image_size=10, with_previous=True)
    assert [bool(dataset[i]["prev_lesion_free"]) for i in range(3)] == [False, False, True]
    lookahead = ClipDataset(discover(root), None, image_size=10, with_previous=True, edge="lookahead")
    assert bool(lookahead[0]["prev_distinct"])  # "t-1" of frame 0 is frame 1 there, another frame


def test_unmasked_frames_are_context_only(tmp_path):
    dataset = ClipDataset(discover(_video(tmp_path, n=4, masked={1, 3})), None, image_size=10)
    assert len(dataset) == 2 and dataset[1]["frame_index"] == 3
    torch.testing.assert_close(_grey(dataset[1]["frames"]), torch.tensor([80.0, 60.0, 40.0]), atol=0.5, rtol=0)



def test_dataloader_batches_and_video_files(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "scan.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (16, 16))
    for i in range(4):
        writer.write(np.full((16, 16, 3), 40 * (i + 1), np.uint8))
    writer.release()
    for i in (2, 3):
        mask = np.zeros((16, 16), np.uint8)
        mask[4:8, 4:8] = 255
        (tmp_path / "masks" / "scan").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "masks" / "scan" / f"{i}.png"), mask)
    dataset = ClipDataset(discover(tmp_path), None, image_size=16)
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["frames"].shape == (2, 3, 3, 16, 16) and batch["video"] == ["scan", "scan"]
    torch.testing.assert_close(_grey(batch["frames"][1]), torch.tensor([160.0, 120.0, 80.0]), atol=4.0, rtol=0)


def test_bad_inputs_raise_clear_errors(tmp_path):
    root = _video(tmp_path / "a", n=3)
    cv2.imwrite(str(root / "mask_list/v/1.png"), np.zeros((5, 5), np.uint8))
    with pytest.raises(DataError, match="mask size 5x5 differs") as info:
        ClipDataset(discover(root), None, image_size=8)[1]
    assert "1.png" in str(info.value)
    root = _video(tmp_path / "b", n=3)
    (root / "bbox.json").write_text("{broken")
    with pytest.raises(DataError, match="malformed bbox.json"):
        ClipDataset(discover(root), None)
    with pytest.raises(DataError, match="no frame with a mask"):
        ClipDataset(discover(_video(tmp_path / "c", masked=set())), None)
