"""The metric names, in one place: the keys of ``metrics.json`` that every table, summary and log reads.

``flanet evaluate`` writes ``metrics.json`` (:mod:`flanet.evaluation.scoring`); ``flanet compare``, the
reports, the training module's validation and the demo read it by these names. Definitions:
docs/metrics.md. A new metric is computed in its module here (standard, vps, video) and named once below.
"""

from __future__ import annotations

#: Per-frame scores of the standard protocol (threshold 0.5): the breast table, paper Table 2.
STANDARD_FRAME: tuple[str, ...] = ("dice", "jaccard", "precision", "recall", "mae")
#: Data-set summary of the standard protocol (F1 = harmonic mean of mean precision and mean recall).
STANDARD: tuple[str, ...] = ("dice", "jaccard", "precision", "recall", "f1", "mae")
#: The columns of the paper's Table 2 (breast lesions), in its order.
TABLE2: tuple[str, ...] = ("dice", "jaccard", "f1", "mae")
#: Summary of the video-polyp (VPS) protocol, as :func:`flanet.metrics.vps.summarise_sequences` gives it.
VPS: tuple[str, ...] = (
    "s_alpha", "e_phi_mean", "e_phi_max", "weighted_f", "max_dice", "mean_dice", "max_iou", "mean_iou", "mae",
)
#: The VPS scores ``metrics.json`` reports; its ``mae`` is stored as :data:`VPS_MAE` (the standard one is ``mae``).
VPS_REPORTED: tuple[str, ...] = ("s_alpha", "e_phi_mean", "e_phi_max", "weighted_f", "max_dice", "max_iou", "mae")
VPS_MAE = "vps_mae"
#: The accuracy columns of a comparison of models (``flanet compare``): both protocols.
COMPARISON: tuple[str, ...] = (*STANDARD, *(VPS_MAE if key == "mae" else key for key in VPS_REPORTED))
#: Lesion detection scored as detection (:mod:`flanet.metrics.detection`): COCO AP, AP50, AP75 of the
#: largest predicted component's box per frame, and of that extent at the heatmap peak (``peak_``).
DETECTION: tuple[str, ...] = ("box_ap", "box_ap50", "box_ap75")
PEAK_DETECTION: tuple[str, ...] = ("peak_box_ap", "peak_box_ap50", "peak_box_ap75")
#: What ``flanet evaluate`` prints: both protocols' headline scores and the video behaviour.
HEADLINE: tuple[str, ...] = (
    *TABLE2, "s_alpha", "e_phi_mean", "e_phi_max", "weighted_f", "max_dice",
    "flicker", "sensitivity", "specificity", "auroc", "loc_error_px", "loc_error_mm",
    *DETECTION,
)

#: Scores of a video-level diagnosis, per label, under ``metrics.json["diagnosis"]["labels"][<label>]``
#: (:mod:`flanet.metrics.diagnosis`; each with a ``<score>_ci`` interval over resampled videos).
DIAGNOSIS: tuple[str, ...] = ("auroc", "sensitivity", "specificity", "balanced_accuracy", "ece")
#: The ``metrics.json`` key of the diagnosis section.
DIAGNOSIS_KEY = "diagnosis"


def diagnosis_name(label: str, score: str) -> str:
    """The flat name of one label's diagnosis score (training log, tables): ``pathology_auroc``."""
    return f"{label}_{score}"


def reported_name(vps_key: str) -> str:
    """The ``metrics.json`` key of a VPS score (``mae`` -> :data:`VPS_MAE`)."""
    return VPS_MAE if vps_key == "mae" else vps_key
