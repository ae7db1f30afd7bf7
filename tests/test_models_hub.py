"""Checkpoints from the Hub and from URLs (issue 25 item 4), with a local hub cache in tmp_path.

Nothing here touches the network: conftest sets HF_HUB_OFFLINE=1; the cache is laid out by hand in
huggingface_hub's layout (models--owner--name/blobs/<sha256>, snapshots/<commit>/<file> -> blob,
refs/main).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from flanet.cli import main
from flanet.models.checkpoint import load_checkpoint, save_checkpoint
from flanet.models.hub import HubError, file_sha256, parse_hf_reference, resolve_checkpoint
from flanet.models.registry import create_model
from flanet.training.module import init_weights

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "someone/flanet-weights"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ck") / "authors.pt"
    save_checkpoint(path, create_model("flanet-authors", encoder="resnet18").eval(), {"image_size": 64})
    return path


def _cache_file(cache: Path, repo_id: str, filename: str, data: bytes, blob: str) -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "blobs" / blob).write_bytes(data)
    link = repo / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path("../" * (filename.count("/") + 2)) / "blobs" / blob)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return link


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, checkpoint) -> Path:
    assert constants.HF_HUB_OFFLINE  # tests never download
    cache = tmp_path / "hub"
    _cache_file(cache, REPO, "v1/authors.pt", checkpoint.read_bytes(), file_sha256(checkpoint))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "home"))
    return cache


def test_references_are_parsed():
    assert parse_hf_reference("hf://a/b/c.pt").repo_id == "a/b"
    ref = parse_hf_reference("hf://a/b@v2/sub/c.pt")
    assert (ref.repo_id, ref.revision, ref.filename) == ("a/b", "v2", "sub/c.pt")
    for bad in ("hf://a/c.pt", "hf://a//c.pt", "hf://a/b@/c.pt"):
        with pytest.raises(HubError):
            parse_hf_reference(bad)


def test_predict_runs_a_checkpoint_from_the_offline_cache(hub_cache, tmp_path, write_video, disc_frames, capsys):
    video = write_video(tmp_path / "clip.mp4", disc_frames(3))
    out = tmp_path / "pred"
    code = main(["predict", str(video), "--checkpoint", f"hf://{REPO}/v1/authors.pt", "--out", str(out),
                 "--no-progress", "--image-size", "64"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["frames"] == 3
    assert main(["weights"]) == 0
    assert f"hf://{REPO}/v1/authors.pt" in capsys.readouterr().out


def test_a_corrupted_cached_blob_is_refused(hub_cache, checkpoint):
    blob = next((hub_cache / f"models--{REPO.replace('/', '--')}" / "blobs").iterdir())
    blob.write_bytes(blob.read_bytes()[:-1] + b"x")
    with pytest.raises(HubError, match="SHA-256"):
        resolve_checkpoint(f"hf://{REPO}/v1/authors.pt")


def test_missing_offline_and_wrong_hash_end_in_one_line(hub_cache, tmp_path, capsys, checkpoint):
    args = ["export", "--out", str(tmp_path / "x.onnx"), "--checkpoint"]
    assert main([*args, f"hf://{REPO}/v1/other.pt"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    assert main([*args, f"hf://{REPO}/v1/authors.pt", "--sha256", "0" * 64]) == 2
    assert "SHA-256" in capsys.readouterr().err
    assert main([*args, "https://example.org/authors.pt"]) == 2
    assert "needs --sha256" in capsys.readouterr().err
    assert main([*args, "https://example.org/authors.pt", "--sha256", "0" * 64]) == 2
    assert "not downloaded yet" in capsys.readouterr().err


def test_url_downloads_are_kept_by_hash(hub_cache, checkpoint):
    digest = file_sha256(checkpoint)
    kept = Path(constants.HF_HOME) / "flanet" / "downloads" / digest / "authors.pt"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(checkpoint.read_bytes())
    assert resolve_checkpoint("https://example.org/files/authors.pt", digest.upper()) == kept
    kept.write_bytes(b"damaged")
    with pytest.raises(HubError, match="SHA-256"):
        resolve_checkpoint("https://example.org/files/authors.pt", digest)


def test_evaluate_and_init_from_take_a_hub_checkpoint(hub_cache, checkpoint, tmp_path, capsys):
    from flanet.data.synth import generate_dataset

    data = generate_dataset(tmp_path / "data", videos=2, frames=3, size=64, seed=0)
    code = main(["evaluate", "--checkpoint", f"hf://{REPO}/v1/authors.pt", "--data", str(data), "--split", "all",
                 "--out", str(tmp_path / "eval"), "--image-size", "64", "--resamples", "10", "--jobs", "1",
                 "--num-workers", "0", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "eval" / "metrics.json").is_file()
    model = create_model("flanet-authors", encoder="resnet18")
    init_weights(model, f"hf://{REPO}/v1/authors.pt")
    for key, value in load_checkpoint(checkpoint).model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
