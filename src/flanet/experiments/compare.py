"""``flanet compare``: train and evaluate several models with one recipe, one comparison table.

Every model gets the same configuration (recipe file plus overrides, hence the same seed, encoder,
image size, schedule and data), only ``model.name`` changes. Each is trained with
:func:`flanet.training.train` into ``<out>/runs/<model>-<config hash>``, its best checkpoint is evaluated on the test
split into ``<out>/eval/<model>``, and the rows are gathered into ``<out>/comparison.md`` (paper Table 2 /
Table 4 format with 95% bootstrap intervals over videos), ``comparison.csv`` and ``comparison.json``.
With ``--table N`` (2, 3 or 4; ``--ablation`` is ``--table 3``) the models are the rows of the paper's
Table N that are registered models, and ``<out>/tableN.md`` holds them in that table's layout with
their cost and the paper's own numbers beside ours (:mod:`flanet.experiments.paper_tables`).
Run folders are ``<out>/runs/<model>-<config hash>``: a model whose run with exactly these settings
already has its checkpoint is not retrained (unless ``--retrain``), an interrupted one is resumed,
and any other settings train anew; the table lists each row's run folder, config hash and the videos
it scored (count and list hash).

``flanet benchmark`` is the command's former name, kept for one release: it runs the same thing and
says on stderr that it is deprecated. Speed is ``flanet bench`` (:mod:`flanet.inference.bench.harness`).
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
from flanet.fileio import atomic_write_text, refuse_overlap

if TYPE_CHECKING:
    from flanet.evaluation.evaluate import EvaluationSettings


log = logging.getLogger(__name__)

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

    parser.add_argument("--data", type=Path, help="data set root (default: the recipe's data.root, e.g. an override data.root=...)")
    parser.add_argument("--models", help="comma-separated registered model names (`flanet models`; default: every one, "
                        "or with --table N the table's rows that are registered models)")
    parser.add_argument("--table", type=int, choices=(2, 3, 4),
                        help="a table of the paper: train and score its rows that are registered models (or the "
                        "--models among them) and write tableN.md in its layout, with params, GFLOPs at 352, "
                        "frames/s and the paper's numbers beside ours")
    parser.add_argument("--ablation", action="store_const", const=3, dest="table", help="the same as --table 3")
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


def model_overrides(model: str, data: Path, out: Path, overrides: Sequence[str], config: str | Path) -> list[str]:
    """The shared overrides plus what differs per model: its name and run folder ``runs/<model>-<config hash>``.

    The folder is named after the hash of the resolved configuration
    (:func:`flanet.training.config.config_hash`), so a run is reused only for exactly the settings
    it was trained with; other settings train anew into another folder.
    """
    from flanet.training import load_config
    from flanet.training.config import config_hash
    from flanet.training.model_defaults import resolve_model_defaults
    from flanet.training.preflight import with_absolute_root

    shared = [*overrides, f"data.root={data.resolve()}", f"model.name={model}", f"name={model}"]
    digest = config_hash(with_absolute_root(resolve_model_defaults(load_config(config, shared))))
    return [*shared, f"output.run_dir={(out / 'runs' / f'{model}-{digest}').resolve()}"]


def compare_models(
    data: Path, models: Sequence[str], config: str | Path, overrides: Sequence[str] = (), out: Path = Path("flanet-compare"),
    *, split: str = "test", retrain: bool = False, device: str | None = None, batch_size: int = 8,
    settings: EvaluationSettings | None = None, table: int | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every model; returns one row of scores per model and writes the tables.

    Every model trains with its own default loss (only ``flanet`` with eq. 1, see
    :func:`flanet.models.default_contrastive_weight`) unless the overrides set
    ``loss.contrastive_weight``. With ``table`` (2, 3 or 4) the rows are also written to
    ``<out>/table<N>.md`` in that table's layout, with each row's cost (parameters and GFLOPs at
    352, streaming frames/s on the evaluation device) and the paper's numbers.

    Raises:
        ValueError: an unknown model name, or one without a row in ``table`` (checked before any
            training starts).
    """
    from flanet.devices import resolve_device
    from flanet.evaluation.evaluate import EvaluationSettings, evaluate_checkpoint
    from flanet.evaluation.report import table_rows, write_metrics_json, write_rows_csv
    from flanet.experiments.ablation import TABLE3_MARK_HEADERS, table3_marks
    from flanet.experiments.costs import device_name, row_cost
    from flanet.experiments.paper_tables import TableEntry, table_markdown, table_note
    from flanet.models import list_models, load_checkpoint, model_spec
    from flanet.training import load_config, train
    from flanet.training.config import config_hash
    from flanet.training.model_defaults import resolve_model_defaults
    from flanet.training.preflight import with_absolute_root

    settings = settings or EvaluationSettings()

    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(list_models())}")
    outside = [m for m in models if table is not None and model_spec(m).row(table) is None]
    if outside:
        raise ValueError(f"model(s) {', '.join(outside)} have no row in Table {table}; its models: "
                         f"{', '.join(list_models(table=table))}")
    refuse_overlap(out, [data, config if Path(config).is_file() else None])  # before any training writes into it
    table_entries: list[TableEntry] = []
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    entries: list[tuple[str, str, dict[str, Any]]] = []
    for model in models:
        model_args = model_overrides(model, data, out, overrides, config)
        recipe = with_absolute_root(resolve_model_defaults(load_config(config, model_args)))
        run_dir = Path(recipe.output.run_dir)
        best = _trained_checkpoint(run_dir, config, model_args, retrain, train, config_hash(recipe))
        result = evaluate_checkpoint(
            best, data, split, out / "eval" / model, image_size=recipe.data.image_size, device=device,
            batch_size=batch_size, num_workers=recipe.data.num_workers, method=model, settings=settings,
        )
        kind = model_spec(model).info.kind
        entries.append((model, kind, result.metrics))
        run_config = best.parent.parent / "config.yaml"  # what the run trained with (also a reused run)
        used = resolve_model_defaults(load_config(run_config)) if run_config.is_file() else recipe
        contrastive = float(used.loss.contrastive_weight)
        scored = result_context(out / "eval" / model)
        row = {"model": model, "kind": kind, "checkpoint": str(best), "run": str(run_dir),
               "config_hash": config_hash(recipe), "selected_on": _selected_on(best),
               "videos": scored.get("count"), "video_hash": scored.get("hash"), "contrastive_weight": contrastive}
        row.update({key: result.metrics.get(key) for key in ROW_KEYS})
        row.update({f"{key}_ci": result.metrics["ci"].get(key) for key in ROW_KEYS if key in result.metrics["ci"]})
        rows.append(row)
        atomic_write_text(out / "comparison.md", _header(config, overrides, split, rows=rows) + table_rows(entries))
        write_rows_csv(out / "comparison.csv", [{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows])
        write_metrics_json(out / "comparison.json", {"models": rows}, {"config": str(config), "overrides": list(overrides), "split": split})
        if table is not None:
            cost = row_cost(load_checkpoint(best).model, recipe.data.image_size, resolve_device(device))
            marks = table3_marks(model, contrastive) if table == 3 else ()
            table_entries.append(TableEntry(model, result.metrics, cost.params_m, cost.gflops, cost.fps, marks))
            fps_device = f"{device_name(resolve_device(device))}, {recipe.data.image_size}px"
            text = table_markdown(table, table_entries, TABLE3_MARK_HEADERS if table == 3 else (), fps_device)
            atomic_write_text(out / f"table{table}.md", _header(config, overrides, split, f"Paper Table {table}", rows)
                              + text + "\n" + table_note(table) + "\n")
    return rows


def _trained_checkpoint(run_dir: Path, config: str | Path, model_args: list[str], retrain: bool, train: Any,
                        digest: str) -> Path:
    """Best checkpoint of the model's run: reused, resumed after an interruption, or trained anew.

    A run is reused or resumed only when its folder's ``config_hash.txt`` is ``digest`` (the
    folder is named after it, so this fails only for a folder edited by hand: refused).
    """
    from flanet.training.config import HASH_FILE

    if (run_dir / "config.yaml").is_file() and not retrain:
        stored = (run_dir / HASH_FILE).read_text(encoding="utf-8").strip() if (run_dir / HASH_FILE).is_file() else None
        if stored != digest:
            raise UsageError(f"{run_dir}: this run folder holds a run with other settings (config hash {stored}, "
                             f"requested {digest}); move it away or pass --retrain")
        if (run_dir / "checkpoints" / "best.pt").is_file():  # a run without validation resumes (a no-op when done)
            best = run_dir / "checkpoints" / "best.pt"
            log.info("%s: reusing %s (config hash %s; --retrain to train again)", run_dir.name, best, digest)
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


def _selected_on(checkpoint: Path) -> str:
    """Which split chose the checkpoint (``best.pt``), or that it is the last epoch's."""
    if checkpoint.name != "best.pt":
        return "none (last epoch)"
    record = json.loads((checkpoint.parent.parent / "splits.json").read_text(encoding="utf-8")) \
        if (checkpoint.parent.parent / "splits.json").is_file() else {}
    return str(record.get("selection_split") or "val")


def result_context(eval_dir: Path) -> dict[str, Any]:
    """The ``scored_videos`` context an evaluation wrote into its ``metrics.json``."""
    path = eval_dir / "metrics.json"
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")).get("context", {}).get("scored_videos", {}))


def _best_or_last(run: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise FileNotFoundError(f"{run}: training wrote no checkpoints/best.pt or last.pt")


def _header(config: str | Path, overrides: Sequence[str], split: str, title: str = "Comparison",
            rows: Sequence[dict[str, Any]] = ()) -> str:
    """Title, recipe, and per row: the videos scored (count, list hash), the run folder, its config hash."""
    shared = " ".join(overrides) or "(none)"
    lines = [f"# {title}", "", f"Recipe `{config}`, overrides `{shared}`, evaluated on split `{split}`.", ""]
    if rows:
        lines += ["| Method | videos scored | video list hash | run folder | config hash | checkpoint chosen on |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['videos']} | `{r['video_hash']}` | `{r['run']}` | `{r['config_hash']}` | "
                  f"{r['selected_on']} |" for r in rows]
        lines.append("")
    return "\n".join(lines) + "\n"


def run_compare(args: argparse.Namespace) -> int:
    """Entry point of ``flanet compare`` (and of its deprecated name ``flanet benchmark``)."""
    from flanet.evaluation.evaluate import EvaluationSettings
    from flanet.experiments.paper_tables import table_models
    from flanet.models import list_models

    if args.command == DEPRECATED_NAME:
        print(f"flanet {DEPRECATED_NAME}: deprecated, use `flanet compare` (same options); "
              "this name goes in the next release", file=sys.stderr)
    data = args.data
    if data is None:
        from flanet.training import load_config

        root = load_config(args.config, args.overrides).data.root
        if root is None:
            raise UsageError("give the data set: --data DATA or the override data.root=DATA (--data)")
        data = Path(root)
    if args.models is not None:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models:  # an empty list never means "every model"
            raise UsageError(f"--models {args.models!r} names no model; give names as `flanet models` lists them "
                             "(--models)")
    else:
        models = table_models(args.table) if args.table is not None else list_models()
    compare_models(  # errors reach flanet.cli.main: one line, exit status 2 (bad input) or 1 (failed run)
        data, models, args.config, args.overrides, args.out, split=args.split, retrain=args.retrain,
        device=args.device, batch_size=args.batch_size,
        settings=EvaluationSettings(resamples=args.resamples, jobs=args.jobs), table=args.table,
    )
    table = f"table{args.table}.md" if args.table is not None else "comparison.md"
    print((args.out / table).read_text(encoding="utf-8"))
    return 0
