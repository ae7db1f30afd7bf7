"""Limits on hostile inputs: each is refused cheaply, before the expensive step, with the file named.

A small PNG declaring 20000x20000 pixels, a symbolic-link loop in a data tree and a YAML alias
bomb (billion laughs) each cost gigabytes or a traceback before; now each is refused before the
expensive step, with the file named.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from flanet.cli import main
from flanet.data import DataError, read_image, read_mask
from flanet.data.check import check_dataset
from flanet.data.synth import generate_dataset
from flanet.evaluation.prediction_folder import read_prediction
from flanet.training.config import load_config
from flanet.yamlsafe import YamlLimitError, load_yaml


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid-looking grey PNG whose header declares ``width x height`` (its data holds two rows)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 2)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b""))
    return path


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image is decoded."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(cv2, "imdecode", refuse)


@pytest.mark.parametrize("reader", [read_image, read_mask, read_prediction])
def test_image_declaring_more_pixels_than_the_limit_is_refused_before_decoding(
    reader: object, tmp_path: Path, no_decoding: None
) -> None:
    bomb = _png_declaring(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"20000x20000.*more than the limit of 100 MP.*FLANET_MAX_IMAGE_PIXELS") as error:
        reader(bomb)  # type: ignore[operator]
    assert error.value.path == bomb


def test_pixel_limit_is_set_by_flanet_max_image_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((40, 50, 3), 90, np.uint8))
    assert read_image(image).shape == (40, 50, 3)
    monkeypatch.setenv("FLANET_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match="50x40"):
        read_image(image)
    monkeypatch.setenv("FLANET_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="FLANET_MAX_IMAGE_PIXELS"):
        read_image(image)


def test_a_bomb_image_is_one_error_line_of_predict(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   no_decoding: None) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    _png_declaring(frames / "000.png", 20000, 20000)
    from flanet.models import create_model, save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "m.pt", create_model("unet", encoder="resnet18"), {"image_size": 32})
    assert main(["predict", "--checkpoint", str(checkpoint), str(frames), "--out", str(tmp_path / "o"),
                 "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "more than the limit of 100 MP" in err and str(frames / "000.png") in err


def test_symlink_loop_is_listed_by_data_check_as_a_problem_of_its_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tree = generate_dataset(tmp_path / "data", videos=2, frames=3, size=32, seed=0)
    loop = next((tree / "img_list").iterdir()) / "loop"
    loop.symlink_to(loop.name)
    report = check_dataset(tree, progress=False)
    assert report.videos == 2 and report.frames == 6  # the rest of the tree is still checked
    assert [(p.severity, p.path, p.message) for p in report.problems if p.path == loop] == [
        ("error", loop, "symbolic link loop, ignored")]
    assert main(["data", "check", str(tree), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"{loop}: symbolic link loop" in out and "NOT usable" in out


BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x, x]"]
                 + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(8)])


def test_yaml_alias_bomb_is_refused_before_expansion(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(YamlLimitError, match="alias"):
        load_yaml(BOMB, source="bomb.yaml")
    config = tmp_path / "bomb.yaml"
    config.write_text("base: cpu-small\n" + BOMB + "\n")
    assert main(["train", "--config", str(config), f"output.dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "alias" in err and str(config) in err


def test_oversized_yaml_is_refused_by_size(tmp_path: Path) -> None:
    with pytest.raises(YamlLimitError, match="characters"):
        load_yaml("x: " + "y" * 2_000_000, source="big.yaml")


def test_normal_yaml_with_aliases_still_loads(tmp_path: Path) -> None:
    assert load_yaml("a: &s {k: 1}\nb: *s\nc: [*s, *s]\n") == {"a": {"k": 1}, "b": {"k": 1}, "c": [{"k": 1}] * 2}
    config = tmp_path / "mine.yaml"
    config.write_text("base: cpu-small\noptim: &o {lr: 0.002}\nname: mine\n")
    assert load_config(config).optim.lr == 0.002


@pytest.mark.parametrize(("args", "key"), [
    (["data", "synth", "{out}", "--size", "100000"], "--size"),  # grew to 23 GB until the kernel killed it
    (["predict", "{out}", "--checkpoint", "m.pt", "--fps", "1e12"], "--fps"),
    (["predict", "{out}", "--checkpoint", "m.pt", "--image-size", "1000000000"], "--image-size"),
    (["bench", "--image-size", "1000000000"], "--image-size"),
])
def test_impossible_sizes_and_rates_are_refused_up_front_naming_the_key(
    args: list[str], key: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 22 item 9: refused by argparse (exit 2) before any folder is made."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main([a.format(out=out) for a in args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert key in err and "must be at most" in err
    assert not out.exists()


def test_synth_refuses_an_impossible_size_in_the_library(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="size <= 4096"):
        generate_dataset(tmp_path / "out", videos=1, frames=1, size=100_000)
    assert not (tmp_path / "out").exists()
