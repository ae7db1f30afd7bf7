"""``flanet data check``: one deliberately broken tree per problem, each reported with its file."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from flanet.cli import main
from flanet.data.check import check_dataset

FRAMES = ["f1", "f2", "f3", "f4"]


def _good_tree(root):
    """Authors' layout, one video of 4 frames 16x16 with masks, boxes and a split list."""
    boxes = {}
    for name in FRAMES:
        (root / "img_list" / "v1").mkdir(parents=True, exist_ok=True)
        (root / "mask_list" / "v1").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "img_list" / "v1" / f"{name}.jpg"), np.full((16, 16, 3), 120, np.uint8))
        mask = np.zeros((16, 16), np.uint8)
        mask[4:10, 3:9] = 255
        cv2.imwrite(str(root / "mask_list" / "v1" / f"{name}.png"), mask)
        boxes[f"{name}.jpg"] = [3, 4, 9, 10]
    (root / "bbox.json").write_text(json.dumps({"v1": boxes}))
    (root / "train_list.csv").write_text("v1\n")
    return root


def _break_unreadable(root):
    (root / "img_list/v1/f2.jpg").write_bytes(b"garbage, not a jpeg")
    return "img_list/v1/f2.jpg", "error", "unreadable image"


def _break_truncated(root):
    data = (root / "img_list/v1/f3.jpg").read_bytes()
    (root / "img_list/v1/f3.jpg").write_bytes(data[: len(data) // 2])
    return "img_list/v1/f3.jpg", "error", "truncated"


def _break_size(root):
    cv2.imwrite(str(root / "mask_list/v1/f1.png"), np.zeros((8, 16), np.uint8))
    return "mask_list/v1/f1.png", "error", "mask is 16x8, its frame f1.jpg is 16x16"


def _break_missing_mask(root):
    (root / "mask_list/v1/f4.png").unlink()
    return "img_list/v1/f4.jpg", "warning", "missing mask"


def _break_not_binary(root):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:10, 3:9] = 250  # JPEG-like values around the same lesion
    mask[0, 0], mask[5, 5] = 3, 255
    cv2.imwrite(str(root / "mask_list/v1/f2.png"), mask)
    return "mask_list/v1/f2.png", "warning", "not binary"


def _break_short_video(root):
    for name in FRAMES[2:]:
        (root / f"img_list/v1/{name}.jpg").unlink()
        (root / f"mask_list/v1/{name}.png").unlink()
    return "img_list/v1", "error", "has 2 frame(s); a clip needs 3"


def _break_split(root):
    (root / "train_list.csv").write_text("v1\nghost\n")
    return "train_list.csv", "error", "names video 'ghost', which does not exist"


def _break_two_splits(root):
    (root / "test_list.csv").write_text("v1\n")
    return "train_list.csv", "error", "is in both 'test' and 'train'"


def _break_json(root):
    (root / "bbox.json").write_text('{"v1": {"f1.jpg": [1, 2, 3, 4],}')
    return "bbox.json", "error", "malformed bbox.json"


def _break_json_box(root):
    (root / "bbox.json").write_text(json.dumps({"v1": {"f1.jpg": [3, 4, "9"]}}))
    return "bbox.json", "error", "malformed box for v1/f1.jpg"


def _break_bbox_disagrees(root):
    data = json.loads((root / "bbox.json").read_text())
    data["v1"]["f3.jpg"] = [10, 10, 16, 16]
    (root / "bbox.json").write_text(json.dumps(data))
    return "img_list/v1/f3.jpg", "error", "disagrees with the mask"


def _break_empty_image(root):
    (root / "img_list/v1/f1.jpg").write_bytes(b"")
    return "img_list/v1/f1.jpg", "error", "empty file"


BREAKERS = [_break_unreadable, _break_truncated, _break_size, _break_missing_mask, _break_not_binary,
            _break_short_video,
            _break_split, _break_two_splits, _break_json, _break_json_box, _break_bbox_disagrees, _break_empty_image]


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__[7:])
def test_each_problem_is_reported_with_its_file(tmp_path, breaker):
    root = _good_tree(tmp_path / "data")
    relative, severity, words = breaker(root)
    report = check_dataset(root, progress=False)
    matches = [p for p in report.problems if p.path == root / relative and words in p.message]
    assert matches, report.format()
    assert matches[0].severity == severity
    assert report.usable() == (severity != "error")
    assert main(["data", "check", str(root), "-q"]) == (1 if severity == "error" else 0)


def test_good_tree_is_clean_and_summarised(tmp_path, capsys):
    root = _good_tree(tmp_path)
    assert main(["data", "check", str(root), "-q"]) == 0
    out = capsys.readouterr().out
    assert "layout        authors" in out and "4 with a mask, 4 with a lesion" in out and "16x16 (4)" in out
    assert "train 1 video / 4 frames" in out and "0 errors, 0 warnings" in out and "verdict       usable" in out


def test_several_problems_are_all_reported(tmp_path):
    root = _good_tree(tmp_path)
    expected = [_break_unreadable(root), _break_missing_mask(root), _break_split(root)]
    report = check_dataset(root, progress=False)
    for relative, _severity, words in expected:
        assert any(p.path == root / relative and words in p.message for p in report.problems), report.format()


def test_stray_files_and_unusual_image_kinds_are_notes(tmp_path):
    root = _good_tree(tmp_path)
    (root / "img_list/v1/.DS_Store").write_bytes(b"\0")
    cv2.imwrite(str(root / "img_list/v1/f1.jpg"), np.full((16, 16), 80, np.uint8))  # grayscale
    (root / "img_list/v1/f2.jpg").unlink()
    cv2.imwrite(str(root / "img_list/v1/f2.png"), np.full((16, 16), 80 * 257, np.uint16))  # 16-bit
    (root / "img_list/v1/f3.jpg").unlink()
    Image.fromarray(np.zeros((16, 16), np.uint8), mode="P").save(root / "img_list/v1/f3.png")  # palette
    data = json.loads((root / "bbox.json").read_text())
    data["v1"] = {k.replace("f2.jpg", "f2.png").replace("f3.jpg", "f3.png"): v for k, v in data["v1"].items()}
    (root / "bbox.json").write_text(json.dumps(data))
    report = check_dataset(root, progress=False)
    assert report.usable(strict=True), report.format()
    messages = {p.message for p in report.problems if p.severity == "note"}
    assert {"stray system file, ignored", "1 grayscale frame(s), read as 8-bit RGB",
            "1 16-bit frame(s), read as 8-bit RGB",
            "1 palette frame(s), read as 8-bit RGB"} <= messages


def test_strict_fails_on_warnings_and_unknown_layout_fails(tmp_path):
    root = _good_tree(tmp_path / "data")
    _break_missing_mask(root)
    assert main(["data", "check", str(root), "-q"]) == 0
    assert main(["data", "check", str(root), "-q", "--strict"]) == 1
    (tmp_path / "empty").mkdir()
    assert main(["data", "check", str(tmp_path / "empty"), "-q"]) == 1


def test_video_files_layout_check(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "scan.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (16, 12))
    for value in range(0, 200, 40):
        writer.write(np.full((12, 16, 3), value, np.uint8))
    writer.release()
    (tmp_path / "broken.mp4").write_bytes(b"")
    (tmp_path / "masks" / "scan").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "masks" / "scan" / "2.png"), np.zeros((8, 8), np.uint8))
    report = check_dataset(tmp_path, progress=False)
    assert report.layout == "video-files" and report.frames == 5 and report.image_sizes == {(16, 12): 5}
    found = {(p.path.name, p.severity, p.message.split(":")[0]) for p in report.problems}
    assert ("broken.mp4", "error", "unreadable video") in found
    assert ("2.png", "error", "mask is 8x8, its frame scan.avi is 16x12") in {(p.path.name, p.severity, p.message)
                                                                             for p in report.problems}
