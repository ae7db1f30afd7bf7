"""Exported backends (ONNX Runtime, OpenVINO): same masks as PyTorch (per-frame Dice >= 0.999), export cache,
providers and settings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flanet.cli import main
from flanet.inference import VideoSegmenter
from flanet.inference.runtimes import BACKENDS
from flanet.inference.runtimes.exported import export_for_onnxruntime
from flanet.inference.runtimes.onnxruntime_runner import OnnxRunner, onnx_providers
from flanet.inference.runtimes.openvino_runner import OpenVinoRunner, openvino_config
from flanet.models import create_model, save_checkpoint

SIZE = 64
EXPORTED = ("onnxruntime", "openvino")


def _frames(count: int, height: int = 72, width: int = 96) -> list[np.ndarray]:
    """Smooth frames with a bright moving disc and some texture."""
    rng = np.random.default_rng(3)
    frames = []
    for i in range(count):
        frame = cv2.GaussianBlur(rng.integers(0, 120, (height, width, 3), dtype=np.uint8), (7, 7), 0)
        cv2.circle(frame, (25 + 6 * i, height // 2), 14, (210, 200, 190), -1)
        frames.append(frame)
    return frames


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("flanet", encoder="resnet18").eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flanet-cache")


@pytest.fixture(scope="module")
def manifest(model: torch.nn.Module, cache: Path) -> Path:
    return export_for_onnxruntime(model, SIZE, cache / "onnx")


@pytest.mark.parametrize("backend", EXPORTED)
def test_exported_backend_masks_match_pytorch_frame_by_frame(
    model: torch.nn.Module, manifest: Path, backend: str
) -> None:
    frames = _frames(6)
    reference = list(VideoSegmenter(model, SIZE, "cpu").stream(frames))
    onnx = list(VideoSegmenter(model, SIZE, "cpu", backend=backend, onnx=manifest).stream(frames))
    assert [r.context_frames for r in onnx] == [1, 2, 3, 3, 3, 3]
    threshold = float(np.median(np.stack([r.probability for r in reference])))  # masks about half full
    for ref, got in zip(reference, onnx, strict=True):
        np.testing.assert_allclose(got.mask_logits.numpy(), ref.mask_logits.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.heatmap.numpy(), ref.heatmap.numpy(), rtol=0, atol=1e-4)
        ref_mask, got_mask = ref.probability >= threshold, got.probability >= threshold
        assert 0.1 < ref_mask.mean() < 0.9
        assert _dice(got_mask, ref_mask) >= 0.999


def test_export_is_cached_by_weights_and_size(model: torch.nn.Module, manifest: Path, cache: Path) -> None:
    assert export_for_onnxruntime(model, SIZE, cache / "onnx") == manifest  # reused, not exported again
    other = create_model("flanet", encoder="resnet18").eval()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    key = lambda m, size: export_for_onnxruntime.__globals__["_cache_key"](m, size)  # noqa: E731
    assert key(other, SIZE) != key(model, SIZE) and key(model, 96) != key(model, SIZE)
    assert not [p for p in (cache / "onnx").iterdir() if p.name.startswith(".export-")]  # no staging left


def test_export_cache_key_follows_the_model_code(model: torch.nn.Module, tmp_path: Path, monkeypatch) -> None:
    """A checkout whose model code changed within one flanet version must not reuse a stale graph."""
    import shutil

    import flanet
    from flanet.inference.runtimes import exported

    package = tmp_path / "flanet"
    shutil.copytree(Path(flanet.__file__).parent / "models", package / "models")
    (package / "inference" / "runtimes").mkdir(parents=True)
    shutil.copy(Path(flanet.__file__).parent / "inference" / "runtimes" / "export.py",
                package / "inference" / "runtimes" / "export.py")
    (package / "data").mkdir()
    (package / "data" / "other.py").write_text("x = 1\n")
    before = exported.model_code_digest(package)
    assert before == exported.model_code_digest()  # the same sources as the installed package
    (package / "data" / "other.py").write_text("x = 2\n")  # not part of the graph
    assert exported.model_code_digest(package) == before
    fusion = package / "models" / "fusion.py"
    fusion.write_text(fusion.read_text() + "\n# changed\n")
    assert exported.model_code_digest(package) != before
    changed = exported.model_code_digest(package)
    (package / "models" / "methods").mkdir(exist_ok=True)  # a registered model in a subpackage of models/
    (package / "models" / "methods" / "net.py").write_text("width = 1\n")
    assert exported.model_code_digest(package) != changed
    key = exported._cache_key(model, SIZE)
    monkeypatch.setattr(exported, "model_code_digest", lambda: "other code")
    assert exported._cache_key(model, SIZE) != key


def test_providers_and_runner_errors(manifest: Path, tmp_path: Path) -> None:
    import onnxruntime

    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    assert onnx_providers()[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ValueError, match="onnxruntime-gpu"):
            onnx_providers("cuda")
    runner = OnnxRunner(manifest, ["CPUExecutionProvider"], threads=1)
    assert runner.streaming and runner.num_frames == 3 and runner.has_heatmap
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OnnxRunner(tmp_path / "missing.json")


@pytest.mark.parametrize("backend", EXPORTED)
def test_image_baseline_runs_its_exported_step(cache: Path, backend: str) -> None:
    unet = create_model("unet", encoder="resnet18").eval()
    frames = _frames(2)
    manifest = export_for_onnxruntime(unet, SIZE, cache / "onnx")
    got = list(VideoSegmenter(unet, SIZE, "cpu", backend=backend, onnx=manifest).stream(frames))
    want = list(VideoSegmenter(unet, SIZE, "cpu").stream(frames))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.mask_logits.numpy(), w.mask_logits.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", EXPORTED)
def test_cli_predict_exported_backend_writes_the_pytorch_masks(
    model: torch.nn.Module, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("FLANET_CACHE_DIR", str(cache))
    checkpoint = save_checkpoint(tmp_path / "m.pt", model, {"image_size": SIZE})
    video = tmp_path / "scan.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (96, 72))
    for frame in _frames(5):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    outs = {}
    for name in ("pytorch", backend):
        outs[name] = tmp_path / name
        args = ["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(outs[name]),
                "--device", "cpu", "--no-progress", "--backend", name, "--threshold", "0.3"]
        assert main(args) == 0
    names = sorted(p.name for p in (outs["pytorch"] / "masks").iterdir())
    assert names == sorted(p.name for p in (outs[backend] / "masks").iterdir()) and len(names) == 5
    for name in names:
        ref = cv2.imread(str(outs["pytorch"] / "masks" / name), cv2.IMREAD_GRAYSCALE) > 0
        got = cv2.imread(str(outs[backend] / "masks" / name), cv2.IMREAD_GRAYSCALE) > 0
        assert _dice(got, ref) >= 0.999
    assert f'"backend": "{backend}"' in (outs[backend] / "summary.json").read_text()


def test_openvino_runs_float32_on_the_available_cpus(manifest: Path, tmp_path: Path) -> None:
    """float32 whatever the CPU (OpenVINO's default is bfloat16 where the CPU has it), threads as asked."""
    from flanet.threads import available_cpus

    assert openvino_config() == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                 "INFERENCE_NUM_THREADS": available_cpus(), "ENABLE_CPU_PINNING": False}
    assert openvino_config(2, streams=2) == {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2,
                                             "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2,
                                             "ENABLE_CPU_PINNING": False}
    runner = OpenVinoRunner(manifest, threads=1)
    assert runner.streaming and runner.num_frames == 3 and runner.has_heatmap and runner.image_size == SIZE
    for compiled in runner.compiled.values():
        assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        OpenVinoRunner(tmp_path / "missing.json")


def test_openvino_backend_errors(model: torch.nn.Module, manifest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from flanet.inference.core import segmenter as streaming

    monkeypatch.setattr(streaming, "resolve_device", torch.device)  # as on a machine with a GPU
    with pytest.raises(ValueError, match="backend openvino runs on the CPU, not on cuda"):
        VideoSegmenter(model, SIZE, "cuda", backend="openvino", onnx=manifest)
    with pytest.raises(ValueError, match="compile applies to backend pytorch only"):
        VideoSegmenter(model, SIZE, "cpu", backend="openvino", onnx=manifest, compile=True)
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
    with pytest.raises(ValueError, match=r"pip install 'flanet\[export\]'"):
        OpenVinoRunner(manifest)


def test_cli_backend_choices_are_the_library_backends() -> None:
    from flanet.inference.commands import _installed_backends

    assert _installed_backends() == list(BACKENDS)  # the test environment installs every backend
