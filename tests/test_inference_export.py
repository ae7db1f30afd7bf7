"""Export round trips: exported encoder/decoder/step reproduce PyTorch (ONNX via onnxruntime)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flanet.cli import main
from flanet.inference.runtimes.export import export_model, run_exported
from flanet.models import create_model, save_checkpoint

SIZE = 64


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("flanet", encoder="resnet18").eval()


def test_onnx_streaming_parts_reproduce_the_clip_forward(model: torch.nn.Module, tmp_path: Path) -> None:
    manifest = export_model(model, tmp_path / "flanet.onnx", "onnx", SIZE, parts="stream")
    assert [p["name"] for p in manifest["parts"]] == ["encoder", "decoder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flanet-decoder.onnx", "flanet-encoder.onnx", "flanet.json"]
    assert json.loads((tmp_path / "flanet.json").read_text())["parts"][0]["file"] == "flanet-encoder.onnx"
    clip = torch.randn(1, 3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    features = [run_exported(tmp_path / "flanet-encoder.onnx", "onnx", [clip[:, k]]) for k in range(3)]
    flat = [torch.from_numpy(f) for frame in features for f in frame]
    mask_logits, heatmap = run_exported(tmp_path / "flanet-decoder.onnx", "onnx", flat)
    with torch.inference_mode():
        expected = model(clip)
    np.testing.assert_allclose(mask_logits, expected.mask_logits.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(heatmap, expected.heatmap.numpy(), rtol=0, atol=1e-4)


def test_export_command_torch_export_step_of_a_variant_without_heatmap(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    basic = create_model("flanet-basic", encoder="resnet18").eval()
    checkpoint = save_checkpoint(tmp_path / "m.pt", basic, {"image_size": SIZE})
    out = tmp_path / "basic.pt2"
    code = main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--format", "torch-export", "--parts", "step"])
    assert code == 0
    assert "step: " in capsys.readouterr().out
    manifest = json.loads((tmp_path / "basic.json").read_text())
    assert [p["name"] for p in manifest["parts"]] == ["step"]
    assert manifest["parts"][0]["inputs"] == {"clip": [1, 3, 3, SIZE, SIZE]}
    assert manifest["parts"][0]["outputs"] == {"mask_logits": [1, 1, SIZE, SIZE]}  # no heatmap branch
    clip = torch.randn(1, 3, 3, SIZE, SIZE)
    (mask_logits,) = run_exported(out, "torch-export", [clip])
    with torch.inference_mode():
        np.testing.assert_allclose(mask_logits, basic(clip).mask_logits.numpy(), rtol=0, atol=1e-5)


def test_export_refuses_a_checkpoint_trained_with_another_normalisation(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """export loads as predict does (issue 24 item 2): before, it wrote a manifest stating ImageNet's normalisation."""
    other = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": "RGB / 255"}
    checkpoint = save_checkpoint(tmp_path / "other.pt", create_model("flanet-basic", encoder="resnet18"),
                                 {"image_size": SIZE, "input_normalisation": other})
    out = tmp_path / "export" / "m.ts"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--format", "torchscript",
                 "--parts", "step"]) == 2
    assert "trained with input normalisation" in capsys.readouterr().err and not out.parent.exists()


def test_export_rejects_a_size_the_encoder_cannot_take(model: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple"):
        export_model(model, tmp_path / "m.onnx", "onnx", 50)


def test_export_parts_option_keeps_its_former_name() -> None:
    from flanet.cli import build_parser

    def parts(*value: str) -> str:
        return build_parser().parse_args(["export", "--checkpoint", "c.pt", "--out", "f.onnx", *value]).parts

    assert parts() == "all" and parts("--parts", "stream") == "stream" and parts("--parts", "streaming") == "stream"
    with pytest.raises(SystemExit):
        parts("--parts", "encoder")
