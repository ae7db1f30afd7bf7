"""Per-frame statistics (hand-computed), overlay drawing and the CSV / video writers."""

from __future__ import annotations

import csv
import math

import cv2
import numpy as np
import torch

from flanet.inference import FrameResult
from flanet.inference.runs.outputs import CONTOUR_COLOUR_BGR, FrameTableWriter, draw_overlay, frame_stats
from flanet.inference.runs.overlay_video import H264, OverlayVideoWriter


def _result(probability: np.ndarray, heatmap: np.ndarray | None, index: int = 7) -> FrameResult:
    return FrameResult(
        index=index, mask_logits=torch.zeros(1, 32, 32), heatmap=None, probability=probability,
        heatmap_full=heatmap, context_frames=3,
    )


def test_frame_stats_match_hand_computed_values() -> None:
    probability = np.zeros((40, 60), np.float32)
    probability[10:20, 30:34] = 0.9  # 10 rows x 4 columns = 40 px
    probability[12, 31] = 0.7
    probability[0, 0] = 0.4  # below threshold: not lesion, but the frame maximum is 0.9
    heatmap = np.zeros((40, 60), np.float32)
    heatmap[15, 32] = 0.8
    stats = frame_stats(_result(probability, heatmap), source="f007")
    assert stats.frame == 7 and stats.source == "f007" and stats.lesion_present
    assert stats.area_px == 40
    assert (stats.bbox_x1, stats.bbox_y1, stats.bbox_x2, stats.bbox_y2) == (30, 10, 33, 19)
    assert (stats.centroid_x, stats.centroid_y) == (31.5, 14.5)
    assert math.isclose(stats.mean_probability, (39 * 0.9 + 0.7) / 40, rel_tol=1e-6)
    assert math.isclose(stats.max_probability, 0.9, rel_tol=1e-6)
    assert (stats.heatmap_peak_x, stats.heatmap_peak_y) == (32, 15)
    assert math.isclose(stats.heatmap_peak_value, 0.8, rel_tol=1e-6)


def test_frame_without_lesion_or_heatmap_has_empty_geometry() -> None:
    stats = frame_stats(_result(np.full((8, 8), 0.2, np.float32), None))
    assert not stats.lesion_present and stats.area_px == 0
    assert all(math.isnan(v) for v in (stats.bbox_x1, stats.centroid_x, stats.mean_probability, stats.heatmap_peak_value))


def test_overlay_draws_contour_and_keeps_input_untouched() -> None:
    rgb = np.full((64, 96, 3), 40, np.uint8)
    original = rgb.copy()
    probability = np.zeros((64, 96), np.float32)
    probability[20:44, 40:70] = 1.0
    result = _result(probability, None)
    bgr = draw_overlay(rgb, result, frame_stats(result))
    np.testing.assert_array_equal(rgb, original)
    assert bgr.shape == rgb.shape and bgr.dtype == np.uint8
    green = np.all(bgr == CONTOUR_COLOUR_BGR, axis=2)
    assert green[20, 55] and green[43, 55]  # top and bottom edges of the lesion
    assert not green[32, 55]  # inside is not filled


def test_writers_produce_a_readable_video_and_csv(tmp_path) -> None:
    probability = np.zeros((32, 48), np.float32)
    probability[5:9, 5:9] = 0.8
    result = _result(probability, None, index=0)
    stats = frame_stats(result, "a")
    with OverlayVideoWriter(tmp_path / "v.mp4", 12.0, (48, 32)) as video, FrameTableWriter(tmp_path / "t.csv") as table:
        for _ in range(3):
            video.write(np.zeros((32, 48, 3), np.uint8))
            table.write(stats)
    assert video.codec == H264
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 48 and int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 32
    assert math.isclose(capture.get(cv2.CAP_PROP_FPS), 12.0)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(rows) == 3 and rows[0]["area_px"] == "16" and rows[0]["heatmap_peak_x"] == ""


def test_overlay_label_is_the_frame_name_the_csv_and_viewer_use(monkeypatch) -> None:
    """Issue 27 item 3: the overlay burned in "frame 40" where the CSV and viewer said 0041."""
    from flanet.data.videoset import frame_name

    texts: list[str] = []
    put_text = cv2.putText
    monkeypatch.setattr(cv2, "putText", lambda image, text, *args: texts.append(text) or put_text(image, text, *args))
    result = _result(np.zeros((32, 48), np.float32), None, index=40)
    draw_overlay(np.zeros((32, 48, 3), np.uint8), result, frame_stats(result, source=frame_name(None, 40)))
    assert set(texts) == {"frame 000041"}  # a video's 41st frame: 1-based, as people and DICOM count
    assert frame_name(["0041", "0042"], 0) == "0041"  # a frame folder's own names are kept


def test_overlay_video_pads_odd_sizes_and_falls_back_to_mp4v_without_pyav(tmp_path, monkeypatch) -> None:
    import av

    from flanet.inference.runs import overlay_video

    with OverlayVideoWriter(tmp_path / "odd.mp4", 10.0, (47, 31)) as video:  # 4:2:0 needs even sides
        for value in (0, 120, 240):
            video.write(np.full((31, 47, 3), value, np.uint8))
    with av.open(str(tmp_path / "odd.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (48, 32)
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
    assert len(frames) == 3 and abs(int(frames[1][:31, :47].mean()) - 120) <= 3  # every pixel kept, not resampled
    monkeypatch.setattr(overlay_video.OverlayVideoWriter, "_warned", False)
    monkeypatch.setattr(overlay_video, "_h264_stream", lambda *args: None)  # as without PyAV
    with OverlayVideoWriter(tmp_path / "old.mp4", 10.0, (48, 32)) as video:
        video.write(np.zeros((32, 48, 3), np.uint8))
    assert video.codec == overlay_video.MP4V
    assert cv2.VideoCapture(str(tmp_path / "old.mp4")).get(cv2.CAP_PROP_FRAME_WIDTH) == 48
