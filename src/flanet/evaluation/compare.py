"""``flanet compare``: train and evaluate several models with one recipe, one comparison table.

Every model gets the same configuration (recipe file plus overrides, hence the same seed, encoder,
image size, schedule and data), only ``model.name`` changes. Each is trained with
:func:`flanet.training.train` into ``<out>/runs/<model>``, its best checkpoint is evaluated on the test
split into ``<out>/eval/<model>``, and the rows are gathered into ``<out>/comparison.md`` (paper Table 2 /
Table 4 format with 95% bootstrap intervals over videos), ``comparison.csv`` and ``comparison.json``.
With ``--ablation`` the models are the five rows of Table 3 plus UNet and UNet++, and
``<out>/ablation.md`` holds them in Table 3's layout (:mod:`flanet.evaluation.ablation`).
A model whose run already has ``checkpoints/best.pt`` is not retrained (unless ``--retrain``), so an
interrupted comparison resumes where it stopped.

``flanet benchmark`` is the command's former name, kept for one release: it runs the same thing and
says on stderr that it is deprecated. Speed is ``flanet bench`` (:mod:`flanet.inference.bench`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flanet.errors import UsageError
from flanet.fileio import atomic_write_text

if TYPE_CHECKING:
    from flanet.evaluation.evaluate import EvaluationSettings


log = logging.getLogger(__name__)

DEFAULT_MODELS = "flanet,flanet-basic,flanet-ffa,flanet-lb,flanet-ffa-lb,unet,unetplusplus"
ROW_KEYS: tuple[str, ...] = (
    "dice", "jaccard", "precision", "recall", "f1", "mae", "s_alpha", "e_phi_mean", "e_phi_max", "weighted_f",
    "max_dice", "max_iou", "vps_mae",
)


#: The command's former name, accepted for one release (hidden from ``flanet --help``).
DEPRECATED_NAME = "benchmark"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``compare`` sub-command and its deprecated alias ``benchmark``."""
    parser = subparsers.add_parser(
        "compare",
        help="accuracy: train and evaluate several models with the same recipe and seed; one comparison table",
        description="Train each model with the same recipe (--config plus overrides, e.g. trainer.max_epochs=5), "
        "evaluate its best checkpoint on the test split and write comparison.md / .csv / .json to --out. "
        "(Speed is `flanet bench`.)",
    )
    _add_arguments(parser)
    _add_arguments(subparsers.add_parser(DEPRECATED_NAME, description="Deprecated name of `flanet compare`."))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from flanet.evaluation.parallel import default_jobs

    parser.add_argument("--data", type=Path, required=True, help="data set root")
    parser.add_argument("--models", help=f"comma-separated model names (default: {DEFAULT_MODELS})")
    parser.add_argument("--ablation", action="store_true",
                        help="the paper's ablation: the five Table 3 rows (flanet-basic, flanet-ffa, flanet-lb, "
                        "flanet-ffa-lb, flanet) plus unet and unetplusplus; also writes ablation.md in Table 3's layout")
    parser.add_argument("--config", required=True, help="training recipe: shipped name (buv-paper, polyp-paper, cpu-small) or YAML file")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value applied to every model")
    parser.add_argument("--out", type=Path, default=Path("flanet-compare"), help="output folder (default: flanet-compare)")
    parser.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    parser.add_argument("--retrain", action="store_true", help="train again even when a run already has best.pt")
    parser.add_argument("--device", help="evaluation device (default: cuda when available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=8, help="evaluation batch size (default: 8)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="processes scoring the VPS protocol in parallel")
    parser.set_defaults(func=run_compare)


def model_overrides(model: str, data: Path, out: Path, overrides: Sequence[str]) -> list[str]:
    """The shared overrides plus what differs per model (its name and run folder)."""
    run_dir = (out / "runs" / model).resolve()
    return [*overrides, f"data.root={data.resolve()}", f"model.name={model}", f"name={model}", f"output.run_dir={run_dir}"]


def compare_models(
    data: Path, models: Sequence[str], config: str | Path, overrides: Sequence[str] = (), out: Path = Path("flanet-compare"),
    *, split: str = "test", retrain: bool = False, device: str | None = None, batch_size: int = 8,
    settings: EvaluationSettings | None = None, ablation: bool = False,
) -> list[dict[str, Any]]:
    """Train and evaluate every model; returns one row of scores per model and writes the tables.

    Every model trains with its own default loss (only ``flanet`` with eq. 1, see
    :func:`flanet.models.default_contrastive_weight`) unless the overrides set
    ``loss.contrastive_weight``. With ``ablation`` the rows are also written to
    ``<out>/ablation.md`` in Table 3's layout.

    Raises:
        ValueError: an unknown model name (checked before any training starts).
    """
    from flanet.evaluation.ablation import AblationEntry, table3_markdown
    from flanet.evaluation.evaluate import EvaluationSettings, evaluate_checkpoint
    from flanet.evaluation.report import table_rows, write_metrics_json, write_rows_csv
    from flanet.models import list_models, model_spec
    from flanet.training import load_config, train
    from flanet.training.model_defaults import resolve_model_defaults

    settings = settings or EvaluationSettings()

    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(list_models())}")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    entries: list[tuple[str, str, dict[str, Any]]] = []
    ablation_entries: list[AblationEntry] = []
    for model in models:
        model_args = model_overrides(model, data, out, overrides)
        recipe = resolve_model_defaults(load_config(config, model_args))
        best = _trained_checkpoint(Path(recipe.output.run_dir), config, model_args, retrain, train)
        result = evaluate_checkpoint(
            best, data, split, out / "eval" / model, image_size=recipe.data.image_size, device=device,
            batch_size=batch_size, num_workers=recipe.data.num_workers, method=model, settings=settings,
        )
        kind = model_spec(model).info.kind
        entries.append((model, kind, result.metrics))
        run_config = best.parent.parent / "config.yaml"  # what the run trained with (also a reused run)
        used = resolve_model_defaults(load_config(run_config)) if run_config.is_file() else recipe
        contrastive = float(used.loss.contrastive_weight)
        ablation_entries.append(AblationEntry(model, contrastive, result.metrics))
        row = {"model": model, "kind": kind, "checkpoint": str(best), "contrastive_weight": contrastive}
        row.update({key: result.metrics.get(key) for key in ROW_KEYS})
        row.update({f"{key}_ci": result.metrics["ci"].get(key) for key in ROW_KEYS if key in result.metrics["ci"]})
        rows.append(row)
        atomic_write_text(out / "comparison.md", _header(config, overrides, split) + table_rows(entries))
        write_rows_csv(out / "comparison.csv", [{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows])
        write_metrics_json(out / "comparison.json", {"models": rows}, {"config": str(config), "overrides": list(overrides), "split": split})
        if ablation:
            header = _header(config, overrides, split, "Ablation (paper Table 3)")
            atomic_write_text(out / "ablation.md", header + table3_markdown(ablation_entries))
    return rows


def _trained_checkpoint(run_dir: Path, config: str | Path, model_args: list[str], retrain: bool, train: Any) -> Path:
    """Best checkpoint of the model's run: reused, resumed after an interruption, or trained anew."""
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file() and not retrain:
        log.info("%s: reusing %s (--retrain to train again)", run_dir.name, best)
        return best
    if (run_dir / "config.yaml").is_file():
        if retrain:
            aside = run_dir.with_name(f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}")
            log.info("%s: moving the previous run to %s", run_dir.name, aside)
            run_dir.rename(aside)
        else:
            log.info("%s: resuming the interrupted run", run_dir.name)
            run = Path(train(None, (), resume=run_dir))
            return _best_or_last(run)
    log.info("%s: training", run_dir.name)
    return _best_or_last(Path(train(config, model_args)))


def _best_or_last(run: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise FileNotFoundError(f"{run}: training wrote no checkpoints/best.pt or last.pt")


def _header(config: str | Path, overrides: Sequence[str], split: str, title: str = "Comparison") -> str:
    shared = " ".join(overrides) or "(none)"
    return f"# {title}\n\nRecipe `{config}`, overrides `{shared}`, evaluated on split `{split}`.\n\n"


def run_compare(args: argparse.Namespace) -> int:
    """Entry point of ``flanet compare`` (and of its deprecated name ``flanet benchmark``)."""
    from flanet.evaluation.ablation import ABLATION_MODELS
    from flanet.evaluation.evaluate import EvaluationSettings

    if args.command == DEPRECATED_NAME:
        print(f"flanet {DEPRECATED_NAME}: deprecated, use `flanet compare` (same options); "
              "this name goes in the next release", file=sys.stderr)
    if args.ablation and args.models is not None:
        raise UsageError("give --ablation or --models, not both (--ablation)")
    names = ",".join(ABLATION_MODELS) if args.ablation else (args.models or DEFAULT_MODELS)
    models = [m.strip() for m in names.split(",") if m.strip()]
    compare_models(  # errors reach flanet.cli.main: one line, exit status 2 (bad input) or 1 (failed run)
        args.data, models, args.config, args.overrides, args.out, split=args.split, retrain=args.retrain,
        device=args.device, batch_size=args.batch_size,
        settings=EvaluationSettings(resamples=args.resamples, jobs=args.jobs), ablation=args.ablation,
    )
    table = "ablation.md" if args.ablation else "comparison.md"
    print((args.out / table).read_text(encoding="utf-8"))
    return 0
