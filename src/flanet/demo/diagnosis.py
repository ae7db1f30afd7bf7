"""The demo's diagnosis stage: a benign/malignant head on the frozen FLA-Net, scored on the test videos.

The synthetic videos carry the BI-RADS cues of their pathology (:mod:`flanet.data.synth_render`: benign
lesions oval, circumscribed, wider than tall, with posterior enhancement; malignant ones spiculated, more
upright, with an echogenic halo and posterior shadowing) and a ``pathology`` label. The head
(:mod:`flanet.models.diagnosis`) is trained with ``task: diagnosis`` on the demo's trained FLA-Net, which
it leaves unchanged (the segmentation numbers of the report do not move), and scored per test video
(:mod:`flanet.evaluation.diagnosis`): AUROC with its 95% interval over videos, sensitivity and
specificity at the validation threshold, calibration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from flanet.data import VideoSet
from flanet.evaluation.diagnosis import diagnose_videos, diagnosis_section, write_reliability_plot
from flanet.models import load_checkpoint
from flanet.training import load_config, train

LABEL = "pathology"
#: Epochs of the head on the frozen model (cheap: the head is small and the frozen model reads each clip once,
#: :class:`flanet.training.diagnosis.DiagnosisModule`); 60 epochs are 180 steps of the head on 12 training videos.
DIAGNOSIS_EPOCHS = 60


def train_and_score(out: Path, root: Path, checkpoint: Path, video_set: VideoSet, image_size: int, seed: int,
                    resamples: int, progress: bool, epochs: int = DIAGNOSIS_EPOCHS) -> dict[str, Any]:
    """Train the head on the frozen model of ``checkpoint`` (``demo`` recipe, ``task: diagnosis``) and score it.

    Returns:
        ``{"run_dir", "epochs", "label", "scores": <the label's diagnosis summary or not_applicable>,
        "reliability": figure path or None}`` (paths relative to ``out``).
    """
    config = load_config("demo", [f"data.root={root}", "task=diagnosis", f"model.init_from={checkpoint}",
                                  f"seed={seed}", f"data.image_size={image_size}", f"diagnosis.labels=[{LABEL}]",
                                  f"trainer.max_epochs={epochs}", f"output.run_dir={out / 'runs' / 'diagnosis'}",
                                  f"trainer.enable_progress_bar={str(progress).lower()}"])
    run_dir = train(config)
    best = run_dir / "checkpoints" / "best.pt"
    loaded = load_checkpoint(best if best.is_file() else run_dir / "checkpoints" / "last.pt")
    assert loaded.diagnosis is not None  # written by the run just trained
    found = diagnose_videos(loaded.model, loaded.diagnosis.head, video_set.subset("test"), image_size,
                            torch.device("cpu"))
    section = diagnosis_section(found, video_set.labels, [LABEL], loaded.diagnosis.thresholds, resamples, seed)
    figure = out / "figures" / "reliability.png"
    figure.parent.mkdir(exist_ok=True)
    drawn = write_reliability_plot(section, figure)
    return {"run_dir": str(run_dir.relative_to(out)), "epochs": epochs, "label": LABEL,
            "scores": {k: v for k, v in section["labels"][LABEL].items() if k != "reliability"},
            "per_video": section["per_video"], "reliability": str(figure.relative_to(out)) if drawn else None}
