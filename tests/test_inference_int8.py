"""INT8 on the CPU: ``flanet export --precision int8`` / ``flanet predict --precision int8`` (issue 28 item 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from flanet.cli import main
from flanet.data.synth import generate_dataset
from flanet.inference import VideoSegmenter
from flanet.inference.runtimes import calibration, quantize
from flanet.inference.runtimes.calibration import HeldOutDice


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "data", videos=3, frames=4, size=64, seed=0)


@pytest.fixture(scope="module")
def int8_export(small_checkpoint: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "model.onnx"
    assert main(["export", "--checkpoint", str(small_checkpoint), "--out", str(out), "--precision", "int8",
                 "--calibration", str(data_root)]) == 0
    return out.with_suffix(".json")


@pytest.mark.slow
def test_int8_export_is_quantized_and_carries_its_held_out_dice(int8_export: Path, capsys) -> None:
    manifest = json.loads(int8_export.read_text())
    assert manifest["precision"] == "int8" and manifest["runtime"] == "onnxruntime"
    assert [p["name"] for p in manifest["parts"]] == ["encoder", "decoder"]
    for part in manifest["parts"]:
        ops = {node.op_type for node in onnx.load(str(int8_export.parent / part["file"])).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    check = manifest["quantization"]
    assert len(check["calibration_videos"]) == 2 and len(check["held_out_videos"]) == 1  # a third held out, by video
    assert set(check["calibration_videos"]).isdisjoint(check["held_out_videos"])
    assert check["calibration_frames"] == 8 and check["frames"] == check["frames_with_mask"] == 4
    assert check["dice_drop"] == pytest.approx(check["dice_float32"] - check["dice_int8"])
    assert 0.5 < check["agreement"] <= 1 and check["max_dice_drop"] == 0.01
    assert not [p for p in int8_export.parent.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.slow
def test_predict_runs_the_int8_export_and_refuses_a_mismatch(int8_export: Path, small_checkpoint: Path,
                                                               data_root: Path, tmp_path: Path) -> None:
    frames = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8) for i in range(3)]
    segmenter = VideoSegmenter.from_checkpoint(small_checkpoint, backend="onnxruntime", precision="int8",
                                               onnx=int8_export)
    assert len(list(segmenter.stream(frames))) == 3
    with pytest.raises(ValueError, match="int8 export, but precision float32"):
        VideoSegmenter.from_checkpoint(small_checkpoint, backend="onnxruntime", onnx=int8_export)
    with pytest.raises(ValueError, match="for onnxruntime, not for openvino"):
        VideoSegmenter.from_checkpoint(small_checkpoint, backend="openvino", precision="int8", onnx=int8_export)
    video = str(data_root / "img_list" / "video000")
    for args, flag in ((["--precision", "int8"], "--precision"), (["--precision", "int8", "--backend", "pytorch",
                                                                     "--calibration", video], "--backend")):
        code = main(["predict", video, "--checkpoint", str(small_checkpoint), "--out", str(tmp_path / "p"), *args])
        assert code == 2 and not (tmp_path / "p").exists(), flag


@pytest.mark.slow
def test_openvino_int8_export_streams_with_its_backend(small_checkpoint: Path, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ov" / "model.onnx"
    assert main(["export", "--checkpoint", str(small_checkpoint), "--out", str(out), "--precision", "int8",
                 "--runtime", "openvino", "--calibration", str(data_root)]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["runtime"] == "openvino" and "encoder" in manifest["quantization"]["int8_parts"]
    assert (out.parent / "model-encoder.xml").is_file() and (out.parent / "model-encoder.bin").is_file()
    segmenter = VideoSegmenter.from_checkpoint(small_checkpoint, backend="openvino", precision="int8",
                                               onnx=out.with_suffix(".json"))
    frames = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8) for i in range(3)]
    assert len(list(segmenter.stream(frames))) == 3


def test_int8_model_over_the_dice_limit_is_refused_and_nothing_is_written(
        small_checkpoint: Path, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(quantize, "_quantize_onnxruntime",  # the float part stands in: the check is what is tested
                        lambda source, target, feeds: [shutil.copyfile(source, target) and target.name])
    monkeypatch.setattr(quantize, "held_out_dice", lambda *a, **k: HeldOutDice(1, 4, 4, 0.80, 0.77, 0.03, 0.9))
    out = tmp_path / "out" / "model.onnx"
    code = main(["export", "--checkpoint", str(small_checkpoint), "--out", str(out), "--precision", "int8",
                 "--calibration", str(data_root), "--max-dice-drop", "0.02"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "Dice drop on 1 held-out video(s) is 0.0300, above --max-dice-drop 0.02" in err[0]
    assert list(out.parent.iterdir()) == []  # no manifest, no part, no staging folder


def test_held_out_dice_compares_with_the_truth_and_with_float32(data_root: Path) -> None:
    class Shifted:  # a "runner" whose logits are the frame's mean grey level, shifted
        def __init__(self, shift: float) -> None:
            self.shift = shift

        def per_frame_state(self, image):
            return [image]

        def predict(self, frames):
            return frames[0][0][:, :1] * 0 + self.shift, None

    videos = calibration.read_videos([data_root])
    same = calibration.held_out_dice(Shifted(5.0), Shifted(5.0), videos[:1], 64, 3)
    assert same.dice_drop == 0 and same.agreement == 1 and same.frames == same.frames_with_mask == 4
    empty = calibration.held_out_dice(Shifted(5.0), Shifted(-5.0), videos[:1], 64, 3)  # all lesion vs none
    assert empty.dice_int8 == 0 and empty.dice_drop == pytest.approx(empty.dice_float32) and empty.agreement == 0
