"""`flanet evaluate --pred-dir` end to end on a small hand-built set in the authors' layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from flanet.cli import main
from flanet.metrics import frame_scores, score_sequence, summarise, summarise_sequences

SIZE = (20, 24)  # H, W
VIDEOS = ("caseA", "caseB", "caseC")
FRAMES = 4


def _masks(video_index: int) -> np.ndarray:
    masks = np.zeros((FRAMES, *SIZE), dtype=bool)
    for t in range(FRAMES):
        masks[t, 5 + t : 12 + t, 4 + video_index : 14 + video_index] = True
    return masks


def _predictions(video_index: int) -> np.ndarray:
    """Grey maps: video 0 perfect, the others shifted soft masks."""
    masks = _masks(video_index).astype(np.float64)
    if video_index == 0:
        return (masks * 255).astype(np.uint8)
    shifted = np.roll(masks, shift=2 * video_index, axis=2) * 0.8 + 0.1
    return (shifted * 255).round().astype(np.uint8)


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    data, preds = tmp_path / "data", tmp_path / "preds"
    rng = np.random.default_rng(0)
    for v, video in enumerate(VIDEOS):
        for t, (mask, pred) in enumerate(zip(_masks(v), _predictions(v))):
            _write(data / "img_list" / video / f"{t:03d}.png", rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8))
            _write(data / "mask_list" / video / f"{t:03d}.png", mask.astype(np.uint8) * 255)
            _write(preds / video / f"{t:03d}.png", pred)
    (data / "train_list.csv").write_text("caseC\n")
    (data / "test_list.csv").write_text("caseA\ncaseB\n")
    return data, preds


def test_scores_equal_the_protocols_computed_directly(dataset: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    data, preds = dataset
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred-dir", str(preds), "--data", str(data), "--out", str(out), "--resamples", "100", "--no-progress", "--jobs", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())

    tested = [0, 1]  # test split: caseA, caseB
    prob = torch.from_numpy(np.concatenate([_predictions(v) for v in tested])).float()[:, None] / 255
    gt = torch.from_numpy(np.concatenate([_masks(v) for v in tested]))[:, None]
    expected = summarise(frame_scores(prob, gt), [VIDEOS[v] for v in tested for _ in range(FRAMES)])
    vps = summarise_sequences([score_sequence(_predictions(v), _masks(v)) for v in tested])
    for key in ("dice", "jaccard", "f1", "mae"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6)
    for key in ("s_alpha", "e_phi_mean", "e_phi_max", "weighted_f", "max_dice"):
        assert metrics[key] == pytest.approx(vps[key], abs=1e-9)
    assert 0 < metrics["dice"] < 1 and metrics["num_videos"] == 2 and metrics["num_frames"] == 8
    assert metrics["ci"]["dice"][0] <= metrics["dice"] <= metrics["ci"]["dice"][1]

    with (out / "per_video.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["video"] for row in rows] == ["caseA", "caseB"]
    assert float(rows[0]["dice"]) == pytest.approx(1.0)
    table = (out / "table.md").read_text()
    assert f"| preds | - | {metrics['dice']:.3f}" in table
    assert len(list((out / "worst_frames").glob("*.png"))) == 8
    assert "dice" in capsys.readouterr().out


def test_missing_wrong_size_and_extra_files_are_named(dataset: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    data, preds = dataset
    (preds / "caseA" / "001.png").unlink()
    _write(preds / "caseB" / "002.png", np.zeros((10, 10), np.uint8))
    _write(preds / "caseB" / "stray.png", np.zeros(SIZE, np.uint8))
    args = ["evaluate", "--pred-dir", str(preds), "--data", str(data), "--out", str(tmp_path / "eval"), "--no-progress", "--jobs", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "missing" in err and str(preds / "caseA" / "001.png") in err
    assert "wrong size" in err and str(preds / "caseB" / "002.png") in err and "10x10" in err
    assert "stray.png" in err
    assert not (tmp_path / "eval").exists()  # bad input: nothing written, exit 2 (docs/metrics.md)


def test_resize_pred_scores_wrong_sized_predictions_and_extra_files_only_warn(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    data, preds = dataset
    big = cv2.resize(_predictions(1)[2], (SIZE[1] * 2, SIZE[0] * 2), interpolation=cv2.INTER_NEAREST)
    _write(preds / "caseB" / "002.png", big)
    _write(preds / "notes" / "stray.png", np.zeros(SIZE, np.uint8))
    out = tmp_path / "eval"
    args = ["evaluate", "--pred-dir", str(preds), "--data", str(data), "--out", str(out), "--no-progress", "--jobs", "1", "--resamples", "50"]
    assert main(args) == 2  # wrong size without --resize-pred
    assert main([*args, "--resize-pred"]) == 0
    check = (out / "prediction_check.txt").read_text()
    assert "002.png" in check and "stray.png" in check
    assert "1 video folder(s) outside the evaluated split" in check  # caseC is a train video


def test_output_inside_the_inputs_is_refused(dataset: tuple[Path, Path], capsys) -> None:
    data, preds = dataset
    args = ["evaluate", "--pred-dir", str(preds), "--data", str(data), "--no-progress", "--jobs", "1"]
    assert main([*args, "--out", str(preds / "eval")]) == 2
    assert main([*args, "--out", str(data)]) == 2
    assert "overlaps the input" in capsys.readouterr().err
    assert not (preds / "eval").exists()


def test_unknown_split_is_a_clear_error(dataset: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    data, preds = dataset
    args = ["evaluate", "--pred-dir", str(preds), "--data", str(data), "--split", "val", "--out", str(tmp_path / "e")]
    assert main(args) == 2
    assert "no split 'val'" in capsys.readouterr().err


def test_flanet_predict_folders_are_accepted(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    data, preds = dataset
    nested = tmp_path / "predict-out"
    for video in VIDEOS:  # `flanet predict` layout: <out>/<video>/masks/<frame>.png plus other files
        (nested / video).mkdir(parents=True)
        (preds / video).rename(nested / video / "masks")
        (nested / video / "frames.csv").write_text("frame\n")
    out = tmp_path / "eval"
    args = ["evaluate", "--pred-dir", str(nested), "--data", str(data), "--out", str(out), "--no-progress", "--jobs", "1", "--resamples", "20"]
    assert main(args) == 0
    check = (out / "prediction_check.txt").read_text()
    assert "missing" not in check and "extra" not in check  # frames.csv next to masks/ is not a prediction
    assert json.loads((out / "metrics.json").read_text())["num_frames"] == 8


def test_binary_png_predictions_saved_as_0_and_1_are_scored_as_masks(dataset: tuple[Path, Path]) -> None:
    # Before: {0, 1} PNGs were read as probabilities of at most 1/255: Dice 0.000, exit status 0.
    from flanet.evaluation.evaluate import EvaluationSettings, evaluate_prediction_folder

    data, preds = dataset
    settings = EvaluationSettings(resamples=10, progress=False, jobs=1)
    scores = {}
    for high in (255, 1):  # the same binary masks, saved as {0, 255} and as {0, 1}
        for path in preds.rglob("*.png"):
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(path), (image > 127).astype(np.uint8) * high)
        scores[high] = evaluate_prediction_folder(preds, data, "test", None, settings=settings)[0].metrics["dice"]
    assert scores[255] > 0.3 and scores[1] == pytest.approx(scores[255], abs=1e-9)


def _palette_png(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # index 1: dark red, as VOC-style masks
    image.save(path)


@pytest.mark.parametrize("fmt", ["16-bit 0/255", "16-bit 0/1", "16-bit 0/65535", "RGB red", "RGBA white", "palette"])
def test_mask_formats_are_read_as_the_data_layer_reads_masks(fmt: str, dataset: tuple[Path, Path]) -> None:
    """Issue 22 item 6: 16-bit, RGB and palette masks scored Dice 0 with exit 0; now the same as 8-bit 0/255."""
    from flanet.evaluation.evaluate import EvaluationSettings, evaluate_prediction_folder

    data, preds = dataset
    settings = EvaluationSettings(resamples=10, progress=False, jobs=1)
    for path in preds.rglob("*.png"):
        cv2.imwrite(str(path), (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8) * 255)
    wanted = evaluate_prediction_folder(preds, data, "test", None, settings=settings)[0].metrics["dice"]
    for path in preds.rglob("*.png"):
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127
        if fmt == "palette":
            _palette_png(path, mask)
            continue
        image = {"16-bit 0/255": mask.astype(np.uint16) * 255, "16-bit 0/1": mask.astype(np.uint16),
                 "16-bit 0/65535": mask.astype(np.uint16) * 65535,
                 "RGB red": np.dstack([np.zeros_like(mask), np.zeros_like(mask), mask]).astype(np.uint8) * 255,  # BGR
                 "RGBA white": np.dstack([mask] * 3 + [np.ones_like(mask)]).astype(np.uint8) * 255}[fmt]
        assert cv2.imwrite(str(path), image)
    got = evaluate_prediction_folder(preds, data, "test", None, settings=settings)[0].metrics["dice"]
    assert wanted > 0.3 and got == pytest.approx(wanted, abs=1e-9)
