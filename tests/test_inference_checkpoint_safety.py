"""Checkpoint safety: code-running pickles are refused, damaged files are clear errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from flanet.cli import main
from flanet.models import CheckpointError, create_model, load_checkpoint, save_checkpoint


class _RunsCode:
    """Unpickling this calls ``os.makedirs(target)``: a visible side effect instead of an attack."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.makedirs, (str(self.target),))


def test_torch_checkpoint_holding_a_code_running_object_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    payload["metadata"] = {"note": _RunsCode(tmp_path / "pwned")}
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: .*run code"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_plain_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"state_dict": _RunsCode(tmp_path / "pwned")}))
    with pytest.raises(CheckpointError, match=r"evil\.pkl"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_checkpoint_is_a_clear_error(checkpoint: Path, tmp_path: Path, fraction: float) -> None:
    data = checkpoint.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"cut\.pt: damaged or truncated"):
        load_checkpoint(path)


def test_empty_and_missing_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: checkpoint is empty"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match=r"missing\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_round_trips(checkpoint: Path) -> None:
    loaded = load_checkpoint(checkpoint)
    assert loaded.config["options"]["encoder"] == "resnet18" and not loaded.model.training


def test_predict_command_refuses_an_unsafe_checkpoint(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    payload["metadata"] = {"note": _RunsCode(tmp_path / "pwned")}
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    frames = tmp_path / "frames"
    frames.mkdir()
    code = main(["predict", "--checkpoint", str(path), str(frames), "--out", str(tmp_path / "out")])
    assert code == 2  # a checkpoint we refuse to load is bad input (the error contract)
    err = capsys.readouterr().err
    assert err.startswith("flanet predict: error: refused") and "Traceback" not in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content", [b"PK", b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 57438977\n"]
)
def test_files_that_are_not_checkpoints_are_clear_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"model\.pt: "):
        load_checkpoint(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_checkpoint_with_non_finite_weights_is_refused_by_name(value: float, tmp_path: Path, capsys) -> None:
    """Issue 22 item 6: NaN weights reported "no lesion" on every frame with exit 0."""
    model = create_model("flanet", encoder="resnet18")
    with torch.no_grad():
        next(p for name, p in model.named_parameters() if name.endswith("weight")).view(-1)[0] = value
    path = save_checkpoint(tmp_path / "diverged.pt", model, {"image_size": 64})
    with pytest.raises(CheckpointError, match=r"diverged\.pt: refused: 1 weight tensor\(s\) hold NaN or infinite"):
        load_checkpoint(path)
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(frames / "0.png"), np.zeros((32, 32, 3), np.uint8))
    assert main(["predict", str(frames), "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_whose_outputs_turn_non_finite_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Issue 22 item 6: outputs that turn NaN mid-run (finite weights) stop the run, exit 1, frame named."""
    import cv2
    import numpy as np

    from flanet.inference.runtimes.pytorch_runner import PyTorchRunner

    path = save_checkpoint(tmp_path / "m.pt", create_model("flanet", encoder="resnet18"), {"image_size": 64})
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((32, 32, 3), 60 * i, np.uint8))
    predict, calls = PyTorchRunner.predict, []

    def nan_from_frame_2(self, frames):
        mask_logits, heatmap = predict(self, frames)
        calls.append(1)
        return (mask_logits.fill_(float("nan")) if len(calls) == 3 else mask_logits), heatmap

    monkeypatch.setattr(PyTorchRunner, "predict", nan_from_frame_2)
    assert main(["predict", str(frames), "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "flanet predict: error: frame 2: the model's output holds NaN or infinite values" in err


def _version_two_model(payload: dict) -> dict:
    return {**payload["model"], "options": {**payload["model"]["options"], "bogus": 1}}


@pytest.mark.parametrize(("field", "tamper"), [
    ("version", lambda payload: "2"),
    ("metadata", lambda payload: "a string"),
    ("state_dict", None),  # removed
    ("state_dict", lambda payload: {"weight": "not a tensor"}),
    ("model", lambda payload: "flanet"),
    ("model_config", lambda payload: "flanet"),  # an extra field beside 'model'
    ("model", _version_two_model),  # an option the model does not have
    ("state_sha256", lambda payload: 123),
])
def test_tampered_checkpoint_fields_are_bad_input_naming_the_file(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, field: str, tamper
) -> None:
    payload = torch.load(checkpoint, weights_only=True)
    if tamper is None:
        del payload[field]
    else:
        payload[field] = tamper(payload)
    path = tmp_path / "tampered.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"tampered\.pt"):
        load_checkpoint(path)
    frames = tmp_path / "frames"
    frames.mkdir()
    assert main(["predict", "--checkpoint", str(path), str(frames), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("flanet predict: error: ") and "tampered.pt" in err
    assert not (tmp_path / "out").exists()
