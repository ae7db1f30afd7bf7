"""viewer.html: written by `flanet evaluate` and `flanet predict`, driven in headless Debian Chromium.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs
them) and the ``selenium`` Python package (a dev dependency); nothing is downloaded at run time.
"""

from __future__ import annotations

import base64
import csv
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flanet.cli import main
from flanet.evaluation.viewer import ViewerCollector, viewer_size, worst_positions
from flanet.inference import predict_to_folder
from flanet.models import create_model

SIZE = (24, 32)  # H, W
FRAMES = 6


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`flanet evaluate --pred-dir` on two videos whose last two frames are lesion-free."""
    root = tmp_path_factory.mktemp("viewer")
    data, preds = root / "data", root / "preds"
    rng = np.random.default_rng(0)
    for v, video in enumerate(("caseA", "caseB")):
        for t in range(FRAMES):
            mask = np.zeros(SIZE, np.uint8)
            if t < FRAMES - 2:
                mask[6 + t : 14 + t, 8 : 18] = 255
            pred = np.roll(mask, v * 2, axis=1)
            if v == 1 and t == FRAMES - 1:
                pred[0:3, 0:4] = 200  # a false positive on a lesion-free frame
            _write(data / "img_list" / video / f"{t:03d}.png", rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8))
            _write(data / "mask_list" / video / f"{t:03d}.png", mask)
            _write(preds / video / f"{t:03d}.png", pred)
    out = root / "eval"
    assert main(["evaluate", "--pred-dir", str(preds), "--data", str(data), "--split", "all", "--out", str(out),
                 "--resamples", "50", "--no-progress", "--jobs", "1"]) == 0  # no split lists: every video, knowingly
    return out


def test_evaluate_reports_detection_stability_and_localisation(evaluated: Path) -> None:
    metrics = json.loads((evaluated / "metrics.json").read_text(encoding="utf-8"))
    # 8 lesion frames all found; 4 lesion-free frames, one with a 12-pixel false positive
    assert metrics["sensitivity"] == 1.0 and metrics["specificity"] == pytest.approx(3 / 4)
    assert metrics["fp_frames_per_video"] == pytest.approx(1 / 2) and metrics["fp_area_px"] == pytest.approx(12)
    assert metrics["video_behaviour"]["detection"]["applicable"] is True
    assert 0.5 < metrics["auroc"] <= 1.0
    # caseA exact (error 0), caseB shifted 2 px right: centroid error 2 px on its 4 lesion frames
    assert metrics["loc_error_px"] == pytest.approx(1.0) and metrics["loc_error_mm"] is None
    # masks follow the truth frame to frame, except caseB's last pair: empty -> false positive (change 1, truth 0)
    assert metrics["flicker"] == pytest.approx(1 / 10) and metrics["mask_change_gt"] == pytest.approx(metrics["mask_change_pred"] - 0.1)
    with (evaluated / "per_video.csv").open(newline="") as handle:
        rows = {row["video"]: row for row in csv.DictReader(handle)}
    assert rows["caseB"]["fp_frames"] == "1.0" and float(rows["caseB"]["loc_error_px"]) == pytest.approx(2.0)
    table = (evaluated / "table.md").read_text(encoding="utf-8")
    assert "### Video behaviour" in table and "Sensitivity" in table
    assert (evaluated / "viewer.html").stat().st_size > 0


def test_viewer_size_limit_and_worst_frames() -> None:
    assert viewer_size(480, 640) == (512, 384) and viewer_size(24, 32) == (32, 24)  # source pixels up to 512
    collector = ViewerCollector(total_frames=10, max_frames=4)
    assert collector.stride == 3
    prob = np.zeros((10, *SIZE), np.uint8)
    collector.add("v", [str(i) for i in range(10)], list(range(10)), prob)
    assert [f.index for f in collector.videos["v"]] == [0, 3, 6, 9]
    assert worst_positions([0.9, 0.1, None, 0.5], "lowest", 2) == [1, 3]
    assert worst_positions([10, 10, 50, 40], "jumps", 2) == [2, 3]


def test_viewer_thins_a_stream_of_unknown_length() -> None:
    collector = ViewerCollector(total_frames=None, max_frames=4)
    for t in range(10):
        collector.add_streamed("v", str(t), t, float(t), np.zeros(SIZE, bool), None, np.zeros((*SIZE, 3), np.uint8))
    assert [f.index for f in collector.videos["v"]] == [0, 4, 8] and collector.stride == 4


def test_viewer_thins_a_stream_past_its_byte_limit() -> None:
    rng = np.random.default_rng(0)
    frame = lambda: rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)  # noqa: E731 - noise: incompressible
    one = ViewerCollector(total_frames=None)
    one.add_streamed("v", "0", 0, 0.0, np.zeros(SIZE, bool), None, frame())
    limit = 3 * one._bytes()  # room for about three frames
    collector = ViewerCollector(total_frames=None, max_bytes=limit)
    for t in range(12):
        collector.add_streamed("v", str(t), t, float(t), np.zeros(SIZE, bool), None, frame())
    kept = [f.index for f in collector.videos["v"]]
    assert collector.stride == 4 and kept == [0, 4, 8] and collector._bytes() <= limit


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`flanet predict` on 4 frames with a FLA-Net whose heatmap is 0.9 everywhere (a visible overlay)."""
    root = tmp_path_factory.mktemp("predict-viewer")
    for t in range(4):
        _write(root / "frames" / f"{t:03d}.png", np.full((*SIZE, 3), 40 * t, np.uint8))
    torch.manual_seed(0)
    model = create_model("flanet", encoder="resnet18")
    with torch.no_grad():
        model.heatmap_head.regressor.weight.zero_()
        model.heatmap_head.regressor.bias.fill_(0.9)
    return predict_to_folder(model, root / "frames", root / "out", image_size=64, device="cpu", progress=False)


def test_predict_writes_a_viewer_with_the_heatmap(predicted: Path) -> None:
    page = (predicted / "viewer.html").read_text(encoding="utf-8")
    data = json.loads(page.split('id="viewer-data">')[1].split("</script>")[0])
    frames = data["videos"][0]["frames"]
    assert [f["name"] for f in frames] == ["000", "001", "002", "003"]
    assert data["videos"][0]["value_name"] == "lesion area (px)"
    for frame in frames:  # half the viewer size (32 x 24 frames), opacity 0.7 h in 16 levels: 0.9 -> 230 -> 160
        png = base64.b64decode(frame["heat"].split(",", 1)[1])
        heat = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert heat.shape == (12, 16, 4) and (heat[..., 3] == 160).all()


def _browser():
    """Headless Debian Chromium through Selenium with the system chromedriver (no download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail("the viewer test needs Debian's chromium and chromium-driver packages (see .ci/run)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def _stage_pixels(browser) -> np.ndarray:
    """BGR screenshot of the frame and its overlays, once every overlay image has decoded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 5).until(lambda b: b.execute_script(
        "return [...document.querySelectorAll('#stage img')].every((i) => !i.getAttribute('src') || i.complete);"))
    png = browser.find_element(By.ID, "stage").screenshot_as_png
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def test_predict_viewer_toggles_the_heatmap_in_chromium(predicted: Path) -> None:
    from selenium.webdriver.common.by import By

    browser = _browser()
    try:
        browser.get((predicted / "viewer.html").as_uri())
        heat = browser.find_element(By.ID, "heat")
        assert heat.is_displayed()
        shown = _stage_pixels(browser)
        browser.find_element(By.ID, "show-heat").click()
        assert not heat.is_displayed()
        hidden = _stage_pixels(browser)
        yellow = lambda bgr: (bgr[..., 2].astype(float) + bgr[..., 1]) / 2 - bgr[..., 0]  # noqa: E731
        # frame 000 is black: with the 0.9 heatmap it is tinted yellow (about 147 here), without it is not
        assert yellow(shown).mean() > yellow(hidden).mean() + 50
        browser.find_element(By.ID, "show-heat").click()
        assert heat.is_displayed()
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        browser.quit()


def test_viewer_plays_scrubs_and_toggles_in_chromium(evaluated: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.get((evaluated / "viewer.html").as_uri())
        info = lambda: browser.find_element(By.ID, "info").text  # noqa: E731
        assert info().startswith("caseA / frame 000 (1 of 6): Dice 1.000")
        browser.find_element(By.ID, "play").click()
        WebDriverWait(browser, 5).until(lambda _: "(1 of 6)" not in info())  # playing advances frames
        browser.find_element(By.ID, "play").click()  # pause
        browser.execute_script("const s = document.getElementById('scrub'); s.value = 4; s.dispatchEvent(new Event('input'));")
        assert "frame 004 (5 of 6)" in info()
        gt = browser.find_element(By.ID, "gt")
        assert gt.is_displayed()
        browser.find_element(By.ID, "show-gt").click()
        assert not gt.is_displayed()
        assert browser.find_element(By.ID, "pred").is_displayed()
        worst = browser.find_elements(By.CSS_SELECTOR, "#worst button")
        assert worst and worst[0].text.startswith("frame ")
        select = browser.find_element(By.ID, "video")
        select.find_element(By.CSS_SELECTOR, "option[value='1']").click()
        assert info().startswith("caseB / frame 000")
        browser.find_element(By.ID, "plot").click()  # the middle of the plot: a middle frame
        assert "(3 of 6)" in info() or "(4 of 6)" in info()
        time.sleep(0.2)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        browser.quit()


def test_predict_viewer_has_no_truth_toggle_lists_area_changes_and_keeps_its_label_clear(predicted: Path) -> None:
    from selenium.webdriver.common.by import By

    browser = _browser()
    try:
        browser.get((predicted / "viewer.html").as_uri())
        # no ground truth in a prediction: no toggle for it; the prediction and heatmap toggles stay
        assert not browser.find_element(By.ID, "show-gt").find_element(By.XPATH, "..").is_displayed()
        assert browser.find_element(By.ID, "show-heat").is_displayed()
        # the frame at its source resolution (32 x 24 here; up to 512 px)
        assert browser.execute_script("return document.getElementById('base').naturalWidth;") == SIZE[1]
        data = json.loads((predicted / "viewer.html").read_text(encoding="utf-8")
                          .split('id="viewer-data">')[1].split("</script>")[0])
        areas = [f["value"] for f in data["videos"][0]["frames"]]
        title = browser.find_element(By.ID, "worst-title").text
        assert title == "Largest changes of lesion area (px) from the previous frame"
        for button, position in zip(browser.find_elements(By.CSS_SELECTOR, "#worst button"), data["videos"][0]["worst"]):
            change = areas[position] - areas[position - 1] if position else 0.0
            assert button.text == f"frame {data['videos'][0]['frames'][position]['name']}: " \
                                  f"{'+' if change >= 0 else ''}{change:.1f} (to {areas[position]:.3f})"
        # the plot's label band holds no curve pixel (the curve is drawn in #1f77b4)
        band = browser.execute_script(
            "const c = document.getElementById('plot'), g = c.getContext('2d');"
            "return Array.from(g.getImageData(0, 0, c.width, 18).data);")
        rgba = np.array(band).reshape(-1, 4)
        curve = (np.abs(rgba[:, :3] - (0x1F, 0x77, 0xB4)).max(1) < 40) & (rgba[:, 3] > 128)
        assert not curve.any()
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        browser.quit()


def test_overlay_video_plays_in_chromium(predicted: Path) -> None:
    """Issue 27 item 1: the mp4v overlay gave MEDIA_ERR_SRC_NOT_SUPPORTED; H.264 plays in a <video> element."""
    from selenium.webdriver.support.ui import WebDriverWait

    summary = json.loads((predicted / "summary.json").read_text(encoding="utf-8"))
    video_dir = Path(summary["videos"][0]["output"])
    assert summary["videos"][0]["overlay_codec"] == "h264 (libx264, PyAV)"
    page = video_dir / "play.html"
    page.write_text('<!DOCTYPE html><video id="v" src="overlay.mp4" muted playsinline></video>', encoding="utf-8")
    browser = _browser()
    try:
        browser.get(page.as_uri())
        state = "const v = document.getElementById('v'); return [v.readyState, v.error && v.error.code];"
        WebDriverWait(browser, 10).until(lambda b: b.execute_script(state)[0] >= 2 or b.execute_script(state)[1])
        ready, error = browser.execute_script(state)
        assert error is None and ready >= 2  # MEDIA_ERR_SRC_NOT_SUPPORTED would be error code 4
        assert browser.execute_script("return document.getElementById('v').videoWidth;") == SIZE[1]
        assert browser.execute_script("return document.getElementById('v').duration;") > 0
    finally:
        browser.quit()
