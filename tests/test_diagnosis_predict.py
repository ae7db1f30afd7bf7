"""``flanet predict`` with a diagnosis head (issue 30 item 2): the running estimate ends at the head's video estimate."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from conftest import _disc_frames
from flanet.data import discover
from flanet.evaluation.diagnosis import diagnose_videos
from flanet.inference import predict_to_folder
from flanet.models import create_model, load_checkpoint, save_checkpoint
from flanet.models.diagnosis import DiagnosisHead, feature_channels


@pytest.fixture(scope="module")
def headed_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("flanet", encoder="mobilenetv3_small_100", neck_channels=[16, 24, 48, 96],
                         decoder_channels=[64, 32, 24, 16], head_channels=16)
    head = DiagnosisHead(feature_channels(model), ["pathology"], hidden=8, attention=4)
    with torch.no_grad():
        head.attend[-1].weight.mul_(50.0)  # attention far from uniform: which frames weigh most matters
    return save_checkpoint(tmp_path_factory.mktemp("headed") / "m.pt", model, {"image_size": 64}, diagnosis=head,
                           thresholds={"pathology": 0.5})


def _predict_five_frames(checkpoint, tmp_path):
    """``flanet predict`` of a 5-frame clip folder ``tmp_path/data/clip``; its output folder."""
    folder = tmp_path / "data" / "clip"
    folder.mkdir(parents=True)
    for index, frame in enumerate(_disc_frames(5, 64, 64)):
        cv2.imwrite(str(folder / f"{index:03d}.png"), frame[..., ::-1])
    return predict_to_folder(checkpoint, folder, tmp_path / "pred", progress=False, device="cpu")


def test_predict_writes_the_running_estimate_and_the_video_estimate(headed_checkpoint, tmp_path):
    out = _predict_five_frames(headed_checkpoint, tmp_path)
    found = json.loads((out / "summary.json").read_text())["videos"][0]["diagnosis"]
    rows = list(csv.DictReader((out / "frames.csv").open()))
    assert len(rows) == 5 and float(rows[-1]["pathology_probability"]) == pytest.approx(
        found["labels"]["pathology"]["probability"], abs=1e-6)
    loaded = load_checkpoint(headed_checkpoint)
    batch = diagnose_videos(loaded.model, loaded.diagnosis.head, discover(tmp_path / "data").videos, 64,
                            torch.device("cpu"))[0]  # every frame, clips read as a batch
    assert found["labels"]["pathology"]["probability"] == pytest.approx(float(batch.probs[0]), abs=1e-4)
    assert [t["frame"] for t in found["top_frames"]] == [frame for frame, _ in batch.top_frames()]
    assert found["labels"]["pathology"]["positive"] == (found["labels"]["pathology"]["probability"] >= 0.5)
    table = list(csv.DictReader((out / "diagnosis.csv").open()))
    assert table[0]["video"] == "clip" and set(table[0]) == {"video", "pathology_probability", "pathology_positive",
                                                             "top_frames"}
    assert np.isclose(float(table[0]["pathology_probability"]), found["labels"]["pathology"]["probability"], atol=1e-4)


def test_predict_viewer_plots_the_attention_over_frames_in_chromium(headed_checkpoint, tmp_path):
    """Issue 30 item 2: the attention over frames, which the viewer can show (a curve on its plot)."""
    from selenium.webdriver.common.by import By

    from test_viewer import _browser

    out = _predict_five_frames(headed_checkpoint, tmp_path)
    page = (out / "viewer.html").read_text(encoding="utf-8")
    frames = json.loads(page.split('id="viewer-data">')[1].split("</script>")[0])["videos"][0]["frames"]
    loaded = load_checkpoint(headed_checkpoint)
    batch = diagnose_videos(loaded.model, loaded.diagnosis.head, discover(tmp_path / "data").videos, 64,
                            torch.device("cpu"))[0]
    expected = dict(zip(batch.frames, batch.attention))
    assert [f["attention"] for f in frames] == pytest.approx([expected[f["index"]] for f in frames], abs=1e-4)
    assert max(f["attention"] for f in frames) > 0.3  # far from uniform (0.2): the curve has a peak
    browser = _browser()
    try:
        browser.get((out / "viewer.html").as_uri())
        assert "diagnosis attention" in browser.find_element(By.ID, "info").text
        plot = browser.find_element(By.ID, "plot").screenshot_as_png
        bgr = cv2.imdecode(np.frombuffer(plot, np.uint8), cv2.IMREAD_COLOR).astype(int)
        purple = (np.abs(bgr - np.array([0xbd, 0x67, 0x94])).max(axis=2) < 40).sum()  # '#9467bd' in BGR
        assert purple > 50  # the attention curve and its label are drawn
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        browser.quit()
