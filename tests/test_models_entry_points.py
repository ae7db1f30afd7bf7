"""Other packages register models through the ``flanet.models`` entry point group.

A small package is built as a wheel and installed by pip into ``tmp_path`` (offline: a wheel needs no
build backend), then found by the registry like any installed distribution.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from flanet.models import registry

PLUGIN = '''
from dataclasses import dataclass

from flanet.models.registry import ModelInfo, ModelOptions, PaperRow, register_model


@dataclass(frozen=True)
class TinyOptions(ModelOptions):
    encoder: str = "resnet18"
    depth: int = 3


@register_model("tiny-plugin", TinyOptions, ModelInfo(
    kind="image", description="a plug-in UNet", paper="none", rows=(PaperRow(4, "UNet"),), reference="a test"))
def tiny(options: TinyOptions):
    import segmentation_models_pytorch as smp

    from flanet.models.baselines import ImageBaseline

    channels = (64, 32, 16, 8, 4)[: options.depth]
    net = smp.Unet(encoder_name=f"tu-{options.encoder}", encoder_weights=None, classes=1,
                   encoder_depth=options.depth, decoder_channels=channels)
    return ImageBaseline(net, size_multiple=2 ** options.depth)
'''


def _wheel(folder: Path, package: str, files: dict[str, str], entry_points: str) -> Path:
    """A minimal PEP 427 wheel holding ``files`` and the ``entry_points.txt`` text."""
    dist = f"{package}-0.1"
    contents = {**files, f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n",
                f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
                f"{dist}.dist-info/entry_points.txt": entry_points}
    record = []
    for name, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    contents[f"{dist}.dist-info/RECORD"] = "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n"
    path = folder / f"{package}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in contents.items():
            archive.writestr(name, text)
    return path


def _install(tmp_path: Path, package: str, files: dict[str, str], entry_points: str) -> Path:
    site = tmp_path / "site"
    wheel = _wheel(tmp_path, package, files, entry_points)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
                    "--target", str(site), str(wheel)], check=True)
    return site


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry loads its entry points again, and forgets what the test registered."""
    registry.list_models()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_loaded", False)


def test_an_installed_package_registers_its_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   fresh_registry: None) -> None:
    import torch

    from flanet.models import create_model, load_checkpoint, save_checkpoint

    site = _install(tmp_path, "flanet_tiny_plugin", {"flanet_tiny_plugin/__init__.py": PLUGIN},
                    "[flanet.models]\ntiny = flanet_tiny_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    assert "tiny-plugin" in registry.list_models(kind="image")
    assert registry.list_models()[:7] == ["flanet", "flanet-basic", "flanet-ffa", "flanet-lb", "flanet-ffa-lb",
                                          "unet", "unetplusplus"]  # built-in first
    model = create_model("tiny-plugin", depth=2).eval()
    assert model.config == {"name": "tiny-plugin", "options": {"encoder": "resnet18", "encoder_weights": None, "depth": 2}}
    with pytest.raises(registry.ModelError, match="'tiny-plugin' has no option 'neck_channels'"):
        create_model("tiny-plugin", neck_channels=[8])
    loaded = load_checkpoint(save_checkpoint(tmp_path / "tiny.pt", model))
    clip = torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(clip).mask_logits, model(clip).mask_logits)


def test_flanet_models_lists_an_installed_package_model(tmp_path: Path) -> None:
    site = _install(tmp_path, "flanet_tiny_plugin_cli", {"flanet_tiny_plugin_cli/__init__.py": PLUGIN},
                    "[flanet.models]\ntiny = flanet_tiny_plugin_cli\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listing = subprocess.run([sys.executable, "-m", "flanet", "models", "--no-cost"], env=env, check=True,
                             capture_output=True, text=True).stdout
    line = next(line for line in listing.splitlines() if line.startswith("tiny-plugin"))
    assert "image" in line and "Table 4 'UNet'" in line and "a plug-in UNet" in line


def test_a_broken_entry_point_is_skipped_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        fresh_registry: None, caplog: pytest.LogCaptureFixture) -> None:
    broken = PLUGIN.replace('"tiny-plugin"', '"tiny-broken"') + "\nraise ImportError('no such thing')\n"
    clash = PLUGIN.replace('"tiny-plugin"', '"unet"')
    site = _install(tmp_path, "flanet_broken_plugin",
                    {"flanet_broken_plugin/__init__.py": "", "flanet_broken_plugin/bad.py": broken,
                     "flanet_broken_plugin/clash.py": clash},
                    "[flanet.models]\nbad = flanet_broken_plugin.bad\nclash = flanet_broken_plugin.clash\n")
    monkeypatch.syspath_prepend(str(site))
    names = registry.list_models()
    assert "tiny-broken" not in names
    assert registry.model_spec("unet").source.startswith("flanet.models.baselines")
    assert "'bad' (flanet_broken_plugin.bad) failed to load and is skipped: no such thing" in caplog.text
    assert "'clash' (flanet_broken_plugin.clash) failed to load and is skipped: model 'unet' is registered twice" in caplog.text
