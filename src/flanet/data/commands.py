"""``flanet data {check,split,synth}``: data set checks, split lists and synthetic videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from flanet.argtypes import positive_int, synth_size
from flanet.data.errors import DataError
from flanet.data.splits import (
    SPLIT_NAMES,
    make_splits,
    official_test_videos,
    parse_ratios,
    split_list_path,
    write_split_lists,
)


def _check(args: argparse.Namespace) -> int:
    from flanet.data.check import check_dataset

    report = check_dataset(args.root, clip_len=args.clip_len, labels_csv=args.labels, workers=args.workers,
                           progress=not args.quiet)
    print(report.format())
    usable = report.usable(strict=args.strict)
    failure = "NOT usable: fix the errors above" + (" and warnings (--strict)" if args.strict else "")
    print("verdict       " + ("usable" if usable else failure))
    return 0 if usable else 1


def _split(args: argparse.Namespace) -> int:
    from flanet.data.layouts import discover

    ratios = parse_ratios(args.ratios)
    video_set = discover(args.root, labels_csv=args.labels)
    ids = [video.id for video in video_set.videos]
    columns = args.stratify_by
    if columns is None:
        columns = sorted({name for values in video_set.labels.values() for name in values})
    strata = None
    if columns:
        strata = {vid: "|".join(video_set.labels.get(vid, {}).get(c, "?") for c in columns) for vid in ids}
    official = official_test_videos(ids)
    if official:  # never moved: the set's own test folder stays the test split
        rest = [video_id for video_id in ids if video_id not in set(official)]
        if ratios[0] + ratios[1] <= 0:
            raise DataError(f"ratios {args.ratios}: the set has an official test split ({len(official)} videos), "
                            "so train:val must not both be 0", video_set.root)
        kept = ratios[0] / (ratios[0] + ratios[1])
        splits = {**make_splits(rest, (kept, 1 - kept, 0.0), args.seed, strata), "test": official}
        print(f"kept the official test split: {len(official)} videos of the test folder(s); "
              f"the other {len(rest)} videos split train:val {args.ratios.split(':')[0]}:{args.ratios.split(':')[1]}")
        ratios = (ratios[0], ratios[1], 1.0)
    else:
        splits = make_splits(ids, ratios, args.seed, strata)
    wanted = {name: splits[name] for name, ratio in zip(SPLIT_NAMES, ratios) if ratio > 0 and splits[name]}
    for name, ratio in zip(SPLIT_NAMES, ratios):
        if ratio > 0 and not splits[name]:
            remedy = " (flanet train then trains without validation, checkpoint last.pt)" if name == "val" else ""
            print(f"no {'validation' if name == 'val' else name} list: too few videos for one{remedy}")
    written = write_split_lists(video_set.root, wanted, force=args.force)
    for name in SPLIT_NAMES:
        stale = split_list_path(video_set.root, name)
        if name not in wanted and stale.exists():  # only reachable with --force
            stale.unlink()
            print(f"removed {stale} (no videos)")
    for path, members in zip(written, wanted.values()):
        print(f"{path}: {len(members)} videos")
    if columns:
        print(f"stratified by: {', '.join(columns)}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from flanet.data.synth import CONTACT_SHEET, generate_dataset

    out = generate_dataset(args.out, args.videos, args.frames, args.size, args.seed, force=args.force, progress=True)
    print(f"wrote {args.videos} videos x {args.frames} frames ({args.size}x{args.size}) to {out}")
    print(f"contact sheet: {out / CONTACT_SHEET}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``flanet data`` with its ``check``, ``split`` and ``synth`` sub-commands."""
    data = subparsers.add_parser(
        "data", help="check data sets, write split lists, make synthetic videos",
        description="Data set tools; the layout of a data set is detected by itself (docs/data.md).")
    commands = data.add_subparsers(dest="data_command", metavar="{check,split,synth}", required=True)

    check = commands.add_parser(
        "check", help="read every frame and mask; report every problem",
        description="Read every frame and mask of a data set and report a summary (layout, videos, frames, sizes, "
        "splits, labels) and every problem, by file. Exit 0 when usable, 1 with errors (or warnings with --strict).")
    check.add_argument("root", type=Path, help="data set folder (layout detected automatically)")
    check.add_argument("--clip-len", type=int, default=3, help="frames a clip needs (default 3)")
    check.add_argument("--labels", type=Path, default=None, help="video-labels CSV (default ROOT/video_labels.csv)")
    check.add_argument("--strict", action="store_true", help="also fail on warnings")
    check.add_argument("--workers", type=int, default=None, help="reader threads (default: CPU count, max 8)")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    check.set_defaults(func=_check, command="data check")  # errors say "flanet data check:"

    split = commands.add_parser(
        "split", help="write train/val/test lists by video (an official test folder is kept)",
        description="Write train_list.csv / val_list.csv / test_list.csv into the data set, by video (never a video "
        "in two splits), shuffled with a seed and stratified by the video labels when there are any. The videos of a test folder (Test/, "
        "VPS-TestSet/...) stay the test list; an empty list is never written.")
    split.add_argument("root", type=Path, help="data set folder; the lists are written there")
    split.add_argument("--ratios", default="4:2:4", help="train:val:test (default 4:2:4, the paper's)")
    split.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    split.add_argument("--labels", type=Path, default=None, help="video-labels CSV to stratify by")
    split.add_argument("--stratify-by", nargs="*", default=None, metavar="COLUMN",
                       help="label columns (default all; give none to turn stratification off)")
    split.add_argument("--force", action="store_true", help="overwrite existing split lists")
    split.set_defaults(func=_split, command="data split")  # errors say "flanet data split:"

    synth = commands.add_parser(
        "synth", help="write a synthetic breast-ultrasound video set (authors' layout)",
        description="Write synthetic B-mode ultrasound videos with lesion masks, boxes, split lists and video labels "
        "in the authors' layout, and a contact sheet: data to try every command on (docs/demo.md).")
    synth.add_argument("out", type=Path, help="output folder (missing or empty)")
    synth.add_argument("--videos", type=positive_int, default=6,
                       help="number of videos (default 6; 3 or more give non-empty train/val/test lists)")
    synth.add_argument("--frames", type=positive_int, default=12, help="frames per video (default 12)")
    synth.add_argument("--size", type=synth_size, default=128,
                       help="square frame side in pixels, 32 to 4096 (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="random seed: one seed writes identical files (default 0)")
    synth.add_argument("--force", action="store_true", help="write into a non-empty folder")
    synth.set_defaults(func=_synth, command="data synth")  # errors say "flanet data synth:"
