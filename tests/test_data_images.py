"""Frame and mask reading (bit depths, channels, palettes, broken files) and model-input preprocessing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from flanet.data import IMAGENET_MEAN, IMAGENET_STD, DataError, read_image, read_mask, to_model_input


def test_rgb_png_is_returned_in_rgb_order(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "f.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(tmp_path / "f.png")
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()


def test_grayscale_16bit_and_rgba_frames_become_uint8_rgb(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    cv2.imwrite(str(tmp_path / "d.png"), gray.astype(np.uint16) * 257)
    rgba = np.dstack([np.full((4, 5, 3), 7, np.uint8), np.zeros((4, 5), np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    for name in ("g.png", "d.png"):
        out = read_image(tmp_path / name)
        assert out.shape == (4, 5, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[..., 1], gray)
    assert (read_image(tmp_path / "a.png") == 7).all()


def test_palette_frame_is_expanded_to_colours(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out[0, 1].tolist() == [255, 0, 0] and out[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("scale", [1, 255])
def test_masks_0_1_and_0_255_are_read_alike(tmp_path, scale):
    mask = np.zeros((6, 6), np.uint8)
    mask[2:4, 1:5] = scale
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == bool
    np.testing.assert_array_equal(out, mask > 0)


def test_palette_mask_uses_indices_not_colours(tmp_path):
    indices = np.zeros((5, 5), np.uint8)
    indices[1:3, 1:3] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([128, 0, 0, 1, 1, 1] + [0] * 762)  # background drawn dark red: index 0 must stay background
    image.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), indices == 1)


def test_16bit_and_colour_masks(tmp_path):
    mask = np.zeros((5, 5), np.uint16)
    mask[0, 0] = 65535
    cv2.imwrite(str(tmp_path / "d.png"), mask)
    colour = np.zeros((5, 5, 3), np.uint8)
    colour[4, 4] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    assert read_mask(tmp_path / "d.png").sum() == 1 and read_mask(tmp_path / "d.png")[0, 0]
    assert read_mask(tmp_path / "c.png").sum() == 1 and read_mask(tmp_path / "c.png")[4, 4]


def test_empty_truncated_and_garbage_files_raise_with_the_file_name(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    ok, encoded = cv2.imencode(".jpg", np.full((32, 32, 3), 90, np.uint8))
    (tmp_path / "cut.jpg").write_bytes(encoded.tobytes()[:-200])
    ok, encoded = cv2.imencode(".png", np.full((32, 32), 90, np.uint8))
    (tmp_path / "cut.png").write_bytes(encoded.tobytes()[:-30])
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    cases = [("empty.png", "empty"), ("cut.jpg", "truncated"), ("cut.png", "truncated"),
             ("junk.png", "not a readable image"), ("none.png", "cannot read")]
    for name, words in cases:
        with pytest.raises(DataError, match=words) as info:
            read_image(tmp_path / name)
        assert name in str(info.value)


def test_to_model_input_resizes_and_normalises():
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 0, 128
    out = to_model_input(rgb, 16)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    expected = [(value - mean) / std for value, mean, std in zip((1.0, 0.0, 128 / 255), IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(out.mean(dim=(1, 2)), torch.tensor(expected), rtol=0, atol=1e-5)


def test_to_model_input_rejects_non_rgb():
    with pytest.raises(DataError, match="uint8 RGB"):
        to_model_input(np.zeros((4, 4), np.uint8), 8)


def test_shrinking_averages_pixel_areas_instead_of_aliasing():
    stripes = np.zeros((40, 40, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes, e.g. fine speckle
    std, mean = torch.tensor(IMAGENET_STD)[:, None, None], torch.tensor(IMAGENET_MEAN)[:, None, None]
    out = to_model_input(stripes, 20) * std + mean
    torch.testing.assert_close(out, torch.full_like(out, 127.5 / 255), atol=1 / 255, rtol=0)
