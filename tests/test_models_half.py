"""Half precision: model.to(bfloat16 / float16) runs forward, encode/decode, streaming and export.

Tolerance, stated once: the mask logits (and heatmap) of the half-precision model differ from
the float32 model's by at most ``REL[dtype] * max(1, max |float32 output|)`` (bf16 keeps 8
significant bits, fp16 11); the FFA's transform runs in float32 inside either way.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from flanet.inference import VideoSegmenter
from flanet.inference.runtimes.export import export_model, run_exported
from flanet.models import create_model

SIZE = 64
REL = {torch.bfloat16: 5e-2, torch.float16: 1e-2}
HALVES = [torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("flanet", encoder="resnet18").eval()


def _assert_close_to(half: torch.Tensor, full: torch.Tensor, dtype: torch.dtype) -> None:
    assert half.dtype == dtype
    scale = max(1.0, float(full.abs().max()))
    diff = float((half.float() - full).abs().max())
    assert diff <= REL[dtype] * scale, f"{dtype}: |diff| {diff:.3g} > {REL[dtype] * scale:.3g}"


@pytest.mark.parametrize("compute", ["spatial", "fft"])
@pytest.mark.parametrize("dtype", HALVES)
def test_forward_and_encode_decode_in_half_precision(reference: torch.nn.Module, dtype: torch.dtype, compute: str) -> None:
    model = create_model("flanet", encoder="resnet18", ffa_compute=compute).eval()
    model.load_state_dict(reference.state_dict())
    model = model.to(dtype)
    clip = torch.randn(2, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        full = reference(clip)
        out = model(clip.to(dtype))
        streamed = model.decode([model.encode(clip[:, k].to(dtype)) for k in range(3)])
    for result in (out, streamed):
        _assert_close_to(result.mask_logits, full.mask_logits, dtype)
        _assert_close_to(result.heatmap, full.heatmap, dtype)


@pytest.mark.parametrize("dtype", HALVES)
def test_streaming_a_half_precision_model(reference: torch.nn.Module, dtype: torch.dtype) -> None:
    frames = [np.random.default_rng(i).integers(0, 256, (48, 56, 3), dtype=np.uint8) for i in range(4)]
    full = list(VideoSegmenter(copy.deepcopy(reference), image_size=SIZE, device="cpu").stream(frames))
    half = list(VideoSegmenter(copy.deepcopy(reference).to(dtype), image_size=SIZE, device="cpu").stream(frames))
    assert len(half) == len(full) == 4
    for h, f in zip(half, full):
        assert h.mask_logits.dtype == torch.float32  # results are float32 whatever the model's dtype
        scale = max(1.0, float(f.mask_logits.abs().max()))
        assert float((h.mask_logits - f.mask_logits).abs().max()) <= REL[dtype] * scale
        assert np.abs(h.probability - f.probability).max() <= REL[dtype]


def test_export_float16_onnx_and_bfloat16_torch_export(reference: torch.nn.Module, tmp_path) -> None:
    half = copy.deepcopy(reference).half()
    manifest = export_model(half, tmp_path / "fp16" / "flanet.onnx", "onnx", image_size=SIZE, parts="stream")
    assert manifest["dtype"] == "float16"
    assert [p["name"] for p in manifest["parts"]] == ["encoder", "decoder"]
    image = torch.randn(1, 3, SIZE, SIZE)
    features = run_exported(tmp_path / "fp16" / "flanet-encoder.onnx", "onnx", [image.half()])
    with torch.no_grad():
        expected = reference.encode(image)
    for got, want in zip(features, expected):
        assert np.abs(got - want.numpy()).max() <= REL[torch.float16] * max(1.0, float(want.abs().max()))
    bf16 = copy.deepcopy(reference).to(torch.bfloat16)
    manifest = export_model(bf16, tmp_path / "bf16" / "flanet.pt2", "torch-export", image_size=SIZE, parts="step")
    assert manifest["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="ONNX has no bfloat16 convolutions"):
        export_model(bf16, tmp_path / "bf16" / "flanet.onnx", "onnx", image_size=SIZE)
