"""The diagnosis in ``flanet evaluate`` (issue 30 item 3): metrics.json section, table, CSV, not-applicable cases."""

from __future__ import annotations

import numpy as np
import pytest

from flanet.evaluation.commands import diagnosis_summary
from flanet.evaluation.diagnosis import (
    VideoDiagnosis,
    diagnosis_rows,
    diagnosis_section,
    diagnosis_table,
    not_applicable,
    write_reliability_plot,
)

# the worked example of docs/metrics.md: malignant 0.9, 0.8, 0.3; benign 0.6, 0.2
PROBS = {"m1": 0.9, "m2": 0.8, "m3": 0.3, "b1": 0.6, "b2": 0.2}
LABELS = {video: {"pathology": "malignant" if video.startswith("m") else "benign", "aln": ""} for video in PROBS}


def _diagnoses() -> list[VideoDiagnosis]:
    return [VideoDiagnosis(video, np.array([p, 0.5]), [0, 4, 8], [0.2, 0.5, 0.3]) for video, p in PROBS.items()]


def test_section_scores_each_label_at_the_validation_threshold():
    section = diagnosis_section(_diagnoses(), LABELS, ["pathology", "aln"], {"pathology": 0.5}, 200, 0)
    pathology = section["labels"]["pathology"]
    assert pathology["auroc"] == pytest.approx(5 / 6)
    assert pathology["sensitivity"] == pytest.approx(2 / 3) and pathology["specificity"] == pytest.approx(1 / 2)
    assert pathology["balanced_accuracy"] == pytest.approx(7 / 12) and pathology["ece"] == pytest.approx(0.36)
    assert pathology["threshold_source"].startswith("chosen on the validation videos")
    assert (pathology["positives"], pathology["negatives"]) == (3, 2)
    assert section["labels"]["aln"] == not_applicable("no scored video has a 'aln' label")
    first = section["per_video"][0]
    assert first["video"] == "m1" and first["truth"]["pathology"] == "malignant"
    assert first["top_frames"][0] == {"frame": 4, "weight": 0.5}  # the frame with the most attention first


def test_without_a_validation_threshold_the_section_uses_half_and_says_so():
    section = diagnosis_section(_diagnoses(), LABELS, ["pathology"], {"pathology": None}, 0, 0)
    assert section["labels"]["pathology"]["threshold"] == 0.5
    assert "no validation threshold" in section["labels"]["pathology"]["threshold_source"]
    assert "0.5: the checkpoint records no validation threshold" in diagnosis_table(section)


def test_a_label_of_one_class_is_not_applicable():
    labels = {video: {"pathology": "malignant"} for video in PROBS}
    section = diagnosis_section(_diagnoses(), labels, ["pathology"], {}, 0, 0)
    assert section["labels"]["pathology"] == not_applicable("the 5 labelled videos are all positive: no AUROC")
    assert "| pathology | - | - | n/a |" in diagnosis_table(section)


def test_table_csv_and_summary_line(tmp_path):
    section = diagnosis_section(_diagnoses(), LABELS, ["pathology"], {"pathology": 0.5}, 0, 0)
    table = diagnosis_table(section)
    assert "| pathology | 5 (3/2) | 0.500 | 0.833 | 0.667 | 0.500 | 0.583 | 0.360 |" in table
    rows = diagnosis_rows(section)
    assert rows[0] == {"video": "m1", "pathology_probability": "0.9000", "pathology": "malignant",
                       "top_frames": "4:0.500 8:0.300 0:0.200"}
    assert diagnosis_summary(section).startswith("diagnosis    pathology AUROC 0.833, balanced accuracy 0.583, 5 videos")
    assert write_reliability_plot(section, tmp_path / "r.png") and (tmp_path / "r.png").stat().st_size > 0


def test_not_applicable_is_stated_in_the_table_and_summary():
    section = not_applicable("the model has no diagnosis head")
    assert "Not applicable: the model has no diagnosis head." in diagnosis_table(section)
    assert diagnosis_summary(section) == "diagnosis    not applicable: the model has no diagnosis head"


def test_the_prediction_viewer_names_the_frames_that_weighed_most():
    from flanet.evaluation.viewer import diagnosis_note

    video = {"video": "clip", "diagnosis": {"labels": {"pathology": {"probability": 0.734}},
                                            "top_frames": [{"frame": 7, "weight": 0.5}, {"frame": 2, "weight": 0.25}]}}
    assert diagnosis_note([video, {"video": "plain"}]) == (
        " Diagnosis of clip: pathology 0.73; frames that weighed most (0-based index, attention): 7 (0.50), 2 (0.25); "
        "the plot's purple curve is the attention of every frame.")
