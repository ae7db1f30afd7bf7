"""Run-folder outputs: flanet checkpoints (best, last), metrics.csv and the loss curve."""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Checkpoint

from flanet.colours import SERIES_COLOURS
from flanet.csvcells import escape_row
from flanet.data.images import input_normalisation
from flanet.data.split_record import METADATA_KEY as SPLIT_KEY
from flanet.data.split_record import SplitRecord
from flanet.fileio import atomic_path, atomic_write_text
from flanet.models import save_checkpoint
from flanet.training.model_defaults import encoder_init, random_encoder_warning
from flanet.training.resume import batches_done
from flanet.training.schema import TrainConfig

if TYPE_CHECKING:
    import matplotlib.figure

log = logging.getLogger(__name__)

METRIC_COLUMNS: tuple[str, ...] = (
    "epoch", "step", "lr",
    "train_loss", "train_bce", "train_iou", "train_heatmap_mse", "train_contrastive",
    "train_negative_fraction", "train_triplet_fraction", "train_dice", "train_wbce", "train_wiou", "train_side",
    "val_loss", "val_dice", "val_jaccard", "val_f1", "val_mae", "val_centre_error", "encoder_pretrained",
    "train_diagnosis", "val_diagnosis_auroc",
)


def selection_score(val: Mapping[str, float]) -> tuple[str, float] | None:
    """``(metric, score)`` that ``best.pt`` is chosen by, higher is better; None without one.

    Validation Dice; for a validation split without any mask (box-only, docs/data.md), minus
    ``val_centre_error`` (heatmap peak to box centre, pixels); for ``task: diagnosis`` (no Dice, its
    validation scored: ``val_diagnosis_auroc`` present), minus the head's validation cross-entropy
    (``val_loss``): a proper scoring rule that keeps telling epochs apart after the AUROC of a small
    validation set has reached 1 (the demo's 6 videos did at the 5th epoch, and choosing by AUROC kept
    that epoch's undertrained head: test AUROC 0.75, where the last of 100 epochs scored 0.81).
    """
    if "val_dice" in val:
        return "val_dice", float(val["val_dice"])
    if "val_diagnosis_auroc" in val:
        return "val_loss", -float(val["val_loss"])
    if "val_centre_error" in val:
        return "val_centre_error", -float(val["val_centre_error"])
    return None


class RunFolder(Checkpoint):
    """Writes, at the end of every training epoch (global rank 0 only):

    - ``checkpoints/last.pt`` and, when validation Dice improved (the heatmap-centre error fell, for
      a box-only validation split: :func:`selection_score`), ``checkpoints/best.pt``
      (flanet checkpoints, :func:`flanet.models.save_checkpoint`, loadable with
      ``torch.load(weights_only=True)``; metadata: epoch, step, metrics, training config);
    - one row of ``metrics.csv`` (:data:`METRIC_COLUMNS`, blank where a term does not apply;
      ``encoder_pretrained`` is 1 for an ImageNet or file encoder, 0 for a random one, and the
      checkpoints' metadata holds ``encoder_init`` and the run's ``warnings``);
    - ``loss_curve.png``.

    An epoch cut short by a stop criterion (``trainer.max_time``, ``trainer.max_steps``) writes
    ``last.pt`` only (metadata ``partial_epoch: true``): its row is written when a resumed run
    finishes the epoch. Every file is replaced atomically (:mod:`flanet.fileio`).

    It is a :class:`~lightning.pytorch.callbacks.Checkpoint` so that Lightning runs it after
    the LightningModule's ``on_train_epoch_end`` (epoch means are ready) and before the
    resume checkpoint is written (its best score is part of that checkpoint).

    Args:
        run_dir: the run folder.
        config: resolved training configuration, stored in the checkpoints' metadata (as a dict).
        record: the run's split record, stored in the metadata (``data_split``) with the selection
            metric (``selection``), so that evaluation can refuse the videos a checkpoint has seen.
    """

    def __init__(self, run_dir: Path, config: TrainConfig, record: SplitRecord | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.record = record
        self.best_score = -math.inf
        self.best_epoch = -1
        self.encoder_init = encoder_init(config)
        warning = random_encoder_warning(config)
        self.warnings = [warning] if warning else []

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.csv"

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = float(state_dict.get("best_score", state_dict.get("best_dice", -math.inf)))
        self.best_epoch = int(state_dict["best_epoch"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self.metrics_path.exists():
            _keep_rows_before(self.metrics_path, trainer.current_epoch)  # resumed run

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        partial = batches_done(trainer)[1] != 0
        validated = getattr(pl_module, "val_epoch", None) == epoch and not partial
        val = dict(pl_module.val_metrics) if validated else {}
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": trainer.global_step,
            "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
            **pl_module.train_metrics,
            **val,
            "encoder_pretrained": int(self.encoder_init != "random"),
        }
        selection = selection_score(val)
        improved = selection is not None and selection[1] > self.best_score and not partial
        if trainer.is_global_zero:
            metadata = {
                "epoch": epoch,
                "global_step": trainer.global_step,
                "metrics": {k: v for k, v in row.items() if k not in ("epoch", "step")},
                "image_size": self.config.data.image_size,
                "edge": self.config.data.edge,
                "input_normalisation": input_normalisation(),
                "heatmap_sigma": self.config.data.heatmap_sigma,
                "train_config": self.config.to_dict(),
                "encoder_init": self.encoder_init,
                "warnings": self.warnings,
                "partial_epoch": partial,
            }
            if self.record is not None:
                metadata[SPLIT_KEY] = self.record.to_dict()
            folder = self.run_dir / "checkpoints"
            head = {"diagnosis": pl_module.head, "thresholds": pl_module.thresholds}
            save_checkpoint(folder / "last.pt", pl_module.model, metadata, **head)
            if partial:
                log.info("epoch %d stopped at step %d: %s written; --resume finishes the epoch",
                         epoch, trainer.global_step, folder / "last.pt")
                return
            if improved:
                chosen = {"split": self.record.selection_split if self.record else None, "metric": selection[0]}
                save_checkpoint(folder / "best.pt", pl_module.model, {**metadata, "selection": chosen}, **head)
                log.info("epoch %d: %s %.4f, best so far -> %s", epoch, selection[0], val[selection[0]],
                         folder / "best.pt")
            _append_row(self.metrics_path, row)
            plot_loss_curve(self.metrics_path, self.run_dir / "loss_curve.png")
        if improved:
            self.best_score, self.best_epoch = selection[1], epoch


def _write_rows(path: Path, rows: list[Mapping[str, Any]]) -> None:
    """Write ``metrics.csv`` whole, atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(escape_row({k: ("" if row.get(k) is None else row.get(k)) for k in METRIC_COLUMNS}))
    atomic_write_text(path, text.getvalue())


def _append_row(path: Path, row: Mapping[str, Any]) -> None:
    _write_rows(path, [*_text_rows(path), row] if path.exists() else [row])


def _text_rows(path: Path) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` as written (text, rewritten unchanged)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_metrics(path: Path) -> list[dict[str, float | None]]:
    """Rows of a run's ``metrics.csv`` with numbers parsed (blank -> None)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                for row in csv.DictReader(handle)]


def _keep_rows_before(path: Path, epoch: int) -> None:
    """Drop rows of epochs a resumed run will train again."""
    _write_rows(path, [r for r in _text_rows(path) if r.get("epoch") and int(r["epoch"]) < epoch])


def plot_loss_curve(metrics_csv: Path, out: Path) -> None:
    """Plot training/validation loss and validation Dice per epoch into ``out`` (PNG, matplotlib Agg)."""
    import matplotlib.pyplot as plt

    figure = loss_curve_figure(metrics_csv)
    with atomic_path(out) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)


def loss_curve_figure(metrics_csv: Path) -> matplotlib.figure.Figure:
    """The loss-curve figure: losses (eq. 2 and its terms) and validation scores against whole epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = read_metrics(metrics_csv)

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for axis in (left, right):
        axis.set_prop_cycle(color=SERIES_COLOURS)  # never the truth / prediction / heatmap colours
    for key, style in (("train_loss", "-"), ("val_loss", "-"), ("train_bce", ":"), ("train_iou", ":"),
                       ("train_heatmap_mse", ":"), ("train_contrastive", ":"), ("train_dice", ":"),
                       ("train_wbce", ":"), ("train_wiou", ":"), ("train_side", ":")):
        x, y = series(key)
        if x:
            left.plot(x, y, style, marker="o", markersize=3, label=key)
    left.set(xlabel="epoch", ylabel="loss", title="losses (eq. 2 and its terms)")
    for key in ("val_dice", "val_jaccard", "val_f1"):
        x, y = series(key)
        if x:
            right.plot(x, y, marker="o", markersize=3, label=key)
    right.set(xlabel="epoch", ylabel="score", title="validation", ylim=(0, 1))
    for axes in (left, right):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no "0.5" ticks
        if axes.get_legend_handles_labels()[0]:  # nothing to label before the first validated epoch
            axes.legend(fontsize=8)
    figure.tight_layout()
    return figure
