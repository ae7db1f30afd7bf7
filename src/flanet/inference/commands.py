"""CLI commands of the inference package: ``flanet predict``, ``flanet export``, ``flanet bench``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from flanet.argtypes import (
    frame_rate,
    image_size,
    keep_region,
    non_negative_int,
    positive_float,
    positive_int,
    unit_interval,
)
from flanet.defaults import IMAGE_SIZE
from flanet.errors import UsageError
from flanet.inference.runtimes import BACKENDS  # imports no torch: --help stays fast
from flanet.models.hub import CHECKPOINT_HELP, SHA256_HELP

__all__ = ["register"]

if TYPE_CHECKING:
    from flanet.inference.core.settings import SegmenterSettings
    from flanet.inference.runs.burned_in import BurnedInPolicy
    from flanet.inference.runs.dicom_outputs import DicomOutputs

log = logging.getLogger(__name__)


def _predict_live(args: argparse.Namespace, checkpoint: Path) -> int:
    from flanet.inference.runs.live import predict_live

    if args.split:
        raise UsageError("--split applies to a dataset root, not to --source")
    if args.export:
        raise UsageError("--export writes annotation files for INPUT's videos, not for --source")
    if args.full_frame:
        raise UsageError("--full-frame applies to DICOM INPUT files (their ultrasound region), not to --source")
    if args.dicom_out or args.store or args.study:
        raise UsageError("--dicom-out, --study and --store apply to DICOM cines and --pacs studies, not to --source")
    source = Path(args.source)
    name = f"{source.stem}-live" if source.is_file() else f"live-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = predict_live(
        checkpoint, args.source, Path(args.out) if args.out else Path.cwd() / f"{name}-flanet",
        force=args.force, fps=args.fps, progress=not args.no_progress, max_frames=args.max_frames,
        duration=args.duration, settings=_settings(args), burned_in=_burned_in(args),
    )
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    latency = "" if summary["latency_ms_p50"] is None else (
        f", latency p50 {summary['latency_ms_p50']:.0f} ms p95 {summary['latency_ms_p95']:.0f} ms")
    print(f"{summary['frames_segmented']} of {summary['frames_captured']} captured frames segmented "
          f"({summary['frames_dropped']} dropped{latency}), stopped: {summary['stop_reason']} -> {out_dir}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from flanet.inference.runs.archive import is_archive_input, predict_archive
    from flanet.inference.runs.predict import predict_to_folder
    from flanet.models.hub import resolve_checkpoint

    if _compile(args) and args.backend != "pytorch":
        raise UsageError("--compile applies to --backend pytorch only (--compile)")
    if args.frames_in_flight > 1 and (args.backend == "pytorch" or args.source is not None):
        raise UsageError("--frames-in-flight above 1 needs --backend onnxruntime or openvino and a recorded input, "
                         "not --source (--frames-in-flight)")
    checkpoint = resolve_checkpoint(args.checkpoint, args.sha256)
    if args.source is not None:
        return _predict_live(args, checkpoint)
    if args.max_frames is not None or args.duration is not None:
        raise UsageError("--max-frames and --duration bound a live run; they need --source")
    dicom = _dicom_outputs(args)
    burned_in = _burned_in(args)
    if args.pacs is not None:
        return _predict_pacs(args, checkpoint, dicom, burned_in)
    input_path = Path(args.input)
    resolved = input_path.resolve()
    default_name = f"{resolved.stem if resolved.is_file() else resolved.name}-flanet"
    out = Path(args.out) if args.out else Path.cwd() / default_name
    archive = is_archive_input(input_path)  # a manifest CSV or a folder of videos: resumable, sharded
    if archive and dicom.wanted:
        raise UsageError("--dicom-out applies to one DICOM cine, a dataset root or a --pacs study, not to an "
                         "archive folder or manifest (--dicom-out)")
    extra = {"dicom_outputs": dicom} if dicom.wanted else {}
    out_dir = (predict_archive if archive else predict_to_folder)(
        checkpoint, input_path, out, force=args.force, fps=args.fps, split=args.split,
        progress=not args.no_progress, full_frame=args.full_frame, export=sorted(set(args.export)),
        burned_in=burned_in, settings=_settings(args), **extra,
    )
    if archive and int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports for all
        return 0
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    if archive:
        print(f"{summary['videos_done']} of {summary['videos_total']} videos done ({summary['videos_resumed']} "
              f"from an earlier run), {summary['frames']} frames -> {out_dir / 'index.csv'}")
        return 0
    print(
        f"{summary['frames']} frames ({summary['frames_with_lesion']} with a lesion, largest "
        f"{summary['largest_area_px']} px) at {summary['fps_achieved']:.1f} frames/s -> {out_dir}"
    )
    return 0


def _burned_in(args: argparse.Namespace) -> BurnedInPolicy:
    """The burned-in identifier policy ``flanet predict``'s options give (docs/inference.md, "Burned-in identifiers")."""
    from flanet.data.dicom import Region
    from flanet.inference.runs.burned_in import BurnedInPolicy

    region = None if args.keep_region is None else Region(*args.keep_region)
    return BurnedInPolicy(allow=args.allow_burned_in, blank_always=args.blank_outside_regions, keep_region=region)


def _dicom_outputs(args: argparse.Namespace) -> DicomOutputs:
    """The DICOM objects ``--dicom-out``, ``--seg-type`` and ``--dicom-identity`` ask for."""
    from flanet.data.dicom_identity import DicomIdentity
    from flanet.inference.runs.dicom_outputs import DicomOutputs

    kinds = tuple(sorted(set(args.dicom_out) | ({"seg"} if "sr" in args.dicom_out else set())))  # sr names SEG frames
    if args.seg_type != "binary" and not kinds:
        raise UsageError("--seg-type applies to the SEG of --dicom-out seg (--seg-type)")
    if args.study is not None and args.pacs is None:
        raise UsageError("--study names a study of the PACS given with --pacs (--study)")
    if args.store and args.pacs is None:
        raise UsageError("--store sends the results to the PACS of --pacs (--store)")
    if args.store and not kinds:
        raise UsageError("--store needs --dicom-out seg and/or sr: the objects to store (--store)")
    if args.store and args.dicom_identity != "source":
        raise UsageError("--store puts the results back into the source study: give --dicom-identity source "
                         "(de-identified results belong to no study of the PACS) (--dicom-identity)")
    return DicomOutputs(kinds, args.seg_type, DicomIdentity(args.dicom_identity))


def _predict_pacs(args: argparse.Namespace, checkpoint: Path, dicom: DicomOutputs, burned_in: BurnedInPolicy) -> int:
    from flanet.inference.runs.pacs import PacsSettings, predict_pacs_study

    if args.study is None:
        raise UsageError("--pacs needs --study UID: the study whose cines to segment (--study)")
    if args.split or args.export:
        raise UsageError("--split and --export apply to INPUT, not to a --pacs study")
    out = Path(args.out) if args.out else Path.cwd() / "pacs-study-flanet"
    pacs = PacsSettings.from_environment(args.pacs, credentials_file=args.pacs_credentials, ca_bundle=args.pacs_ca_bundle)
    record = predict_pacs_study(
        checkpoint, pacs, args.study, out, dicom_outputs=dicom, store=args.store, force=args.force, fps=args.fps,
        progress=not args.no_progress, full_frame=args.full_frame, burned_in=burned_in, settings=_settings(args))
    stored = f", {len(record['stored'])} object(s) stored into the study" if args.store else ""
    print(f"{len(record['cines'])} cine(s) of the study segmented{stored} -> {out}")
    return 0


def _settings(args: argparse.Namespace) -> SegmenterSettings:
    """The segmenter settings ``flanet predict``'s options give."""
    from flanet.inference.core.settings import SegmenterSettings

    return SegmenterSettings(image_size=args.image_size, device=args.device, threshold=args.threshold,
                             backend=args.backend, compile=_compile(args), frames_in_flight=args.frames_in_flight)


def _export_parts(value: str) -> str:
    """``--parts`` of ``flanet export``; ``streaming``, its name before this release, still means ``stream``."""
    return "stream" if value == "streaming" else value


def _export(args: argparse.Namespace) -> int:
    from flanet.inference.runtimes.export import export_checkpoint
    from flanet.models.hub import resolve_checkpoint

    manifest = export_checkpoint(
        resolve_checkpoint(args.checkpoint, args.sha256), Path(args.out), fmt=args.format, image_size=args.image_size, parts=args.parts
    )
    for part in manifest["parts"]:
        print(f"{part['name']}: {part['file']} (max |diff| vs PyTorch {part['max_abs_diff']:.2e})")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from flanet.inference.bench.harness import run_bench

    run_bench(
        encoders=args.encoders, image_size=args.image_size, frames=args.frames, runs=args.runs,
        warmup=args.warmup, devices=args.devices, json_path=Path(args.json),
        markdown=None if args.docs is None else Path(args.docs),
        allocators=["default", "tuned"] if args.malloc == "both" else [args.malloc],
        backends=args.backends or _installed_backends(), end_to_end=not args.no_end_to_end,
        authors=None if args.authors == "none" or not Path(args.authors).is_file() else Path(args.authors),
        compile=_compile(args), rounds=args.rounds, frames_in_flight=args.frames_in_flight,
        video_size=args.video_size, video_frames=args.video_frames, unfolded=args.unfolded,
    )
    return 0


def _video_size(value: str) -> tuple[int, int]:
    """``--video-size WxH`` of ``flanet bench``."""
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1920x1080, got {value!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"expected at least 16x16, got {value!r}")
    return width, height


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _installed_backends() -> list[str]:
    """Default ``--backends`` of ``flanet bench``: pytorch and each exported backend whose package is installed."""
    import importlib.util

    return [b for b in BACKENDS if b == "pytorch" or importlib.util.find_spec(b) is not None]


def _add_compile(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("--compile", action="store_true",
                        help=f"{verb} with torch.compile of the per-frame encode and decode (backend pytorch; "
                        "static shapes, compiled once on the first frames): mode reduce-overhead (CUDA graphs) "
                        "on CUDA, default mode with frozen weights elsewhere")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES, help="another torch.compile mode (implies --compile)")


def _compile(args: argparse.Namespace) -> bool | str:
    """The ``compile`` argument of VideoSegmenter: False, True (mode by device) or a mode."""
    return args.compile_mode or args.compile


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict``, ``export`` and ``bench`` to the ``flanet`` CLI."""
    p = subparsers.add_parser(
        "predict", help="segment a video, a folder of frames or a dataset with a checkpoint",
        description="Segment every frame (streaming: one encoder pass per frame) and write masks/*.png, "
        "overlay.mp4, frames.csv and summary.json. Never writes into the input; refuses an existing "
        "output folder without --force.",
    )
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("input", nargs="?", help="video file (mp4/avi/...), DICOM cine (.dcm), folder of frames, or dataset root")
    given.add_argument("--pacs", metavar="URL",
                       help="a PACS's DICOMweb root (https://pacs.example/dicom-web): segment the cines of --study; "
                       "credentials from $FLANET_PACS_USERNAME/$FLANET_PACS_PASSWORD, $FLANET_PACS_TOKEN or "
                       "--pacs-credentials FILE, never the command line (docs/inference.md, Results into the PACS)")
    given.add_argument("--source", help="live: a capture device index (0), a stream URL (rtsp://, http://) or a video "
                       "file played at its frame rate; the newest frame is segmented, stale ones dropped (docs/inference.md)")
    p.add_argument("--checkpoint", required=True, help=f"flanet checkpoint (.pt): {CHECKPOINT_HELP}")
    p.add_argument("--sha256", help=SHA256_HELP)
    p.add_argument("--out", help="output folder (default: ./<input name>-flanet)")
    p.add_argument("--force", action="store_true", help="replace an output folder written by an earlier predict")
    p.add_argument("--image-size", type=image_size, help=f"model input size (default: the checkpoint's, else {IMAGE_SIZE})")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threshold", type=unit_interval, default=0.5, help="mask probability threshold (default 0.5)")
    p.add_argument("--fps", type=frame_rate, default=25.0, help="overlay frame rate for frame folders and videos that state none (default 25)")
    p.add_argument("--split", help="dataset root only: segment this split (default: all videos)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--backend", default="pytorch", choices=BACKENDS,
                   help="pytorch (default), onnxruntime or openvino (CPU): the exported encoder + decoder, exported "
                   "to ONNX once per checkpoint into ~/.cache/flanet/onnx ($FLANET_CACHE_DIR)")
    _add_compile(p, "segment")
    p.add_argument("--frames-in-flight", type=positive_int, default=1, metavar="N",
                   help="--backend onnxruntime/openvino, recorded inputs: segment N frames at a time, each on 1/N of "
                   "the CPUs: more frames/s on few cores (onnxruntime), same masks (default 1)")
    p.add_argument("--full-frame", action="store_true",
                   help="DICOM: segment the whole frame, not only its ultrasound imaging region")
    p.add_argument("--allow-burned-in", action="store_true",
                   help="an input to blank (a DICOM declaring BurnedInAnnotation YES, or any with "
                   "--blank-outside-regions) that has no region to keep: process it unblanked (the overlay and "
                   "viewer show any text; summary.json says so) instead of refusing it")
    p.add_argument("--blank-outside-regions", action="store_true",
                   help="blank everything outside the ultrasound regions in the overlay and viewer of every input, "
                   "not only DICOM files declaring burned-in annotation; an input without regions of its own needs "
                   "--keep-region (else refused)")
    p.add_argument("--keep-region", type=keep_region, metavar="X0,Y0,X1,Y1",
                   help="keep only this rectangle of frame pixels (inclusive) in the overlay and viewer of every input "
                   "without ultrasound regions of its own (video files, frame folders, --source), blanking the rest "
                   "(burned-in names, IDs, dates); DICOM files keep their own regions")
    p.add_argument("--export", nargs="+", action="extend", default=[], choices=["coco", "cvat"], metavar="FORMAT",
                   help="also write the masks for annotation tools, per video in export/: coco (COCO RLE, "
                   "coco.json) and/or cvat (CVAT for video 1.1, cvat.xml); e.g. --export coco cvat")
    p.add_argument("--dicom-out", nargs="+", action="extend", default=[], choices=["seg", "sr"], metavar="KIND",
                   help="DICOM cines: also write per cine dicom/seg.dcm (DICOM Segmentation of the lesion, one frame "
                   "per cine frame with a lesion) and/or dicom/sr.dcm (TID 1500 SR: largest area and diameter; "
                   "implies seg), e.g. --dicom-out seg sr")
    p.add_argument("--seg-type", choices=["binary", "fractional"], default="binary",
                   help="the SEG's pixels: binary masks (default) or fractional lesion probabilities")
    p.add_argument("--dicom-identity", choices=["deidentify", "source"], default="deidentify",
                   help="whose study the DICOM results belong to: deidentify (default: DICOM PS3.15 basic profile, "
                   "consistent replacement UIDs) or source (the source's patient and study, new series)")
    p.add_argument("--study", metavar="UID", help="--pacs: the Study Instance UID whose cines to segment")
    p.add_argument("--store", action="store_true",
                   help="--pacs: store the SEG/SR back into the study (STOW-RS); needs --dicom-identity source")
    p.add_argument("--pacs-credentials", metavar="FILE",
                   help="--pacs: JSON file with username and password, or token (keep it private: mode 600)")
    p.add_argument("--pacs-ca-bundle", metavar="FILE",
                   help="--pacs: CA certificates to verify the PACS's TLS certificate with (verification is always on)")
    p.add_argument("--max-frames", type=positive_int, help="--source: stop after this many segmented frames")
    p.add_argument("--duration", type=positive_float, help="--source: stop after this many seconds")
    p.set_defaults(func=_predict, streaming=True)  # threads adapt to free CPUs: libgomp's spinning kept

    e = subparsers.add_parser(
        "export", help="export the per-frame step (encoder, decoder, 3-frame step): ONNX, torch.export, TorchScript",
        description="Export for deployment; every exported part is checked against PyTorch. See docs/inference.md.",
    )
    e.add_argument("--checkpoint", required=True, help=f"flanet checkpoint (.pt): {CHECKPOINT_HELP}")
    e.add_argument("--sha256", help=SHA256_HELP)
    e.add_argument("--out", required=True, help="file of the 3-frame step, e.g. flanet.onnx; parts go next to it")
    e.add_argument("--format", default="onnx", choices=["onnx", "torchscript", "torch-export"],
                   help="onnx (default; what --backend onnxruntime / openvino run), torchscript or torch-export")
    e.add_argument("--parts", default="all", choices=["all", "step", "stream"], type=_export_parts,
                   help="step: full 3-frame step; stream: encoder + decoder; all (default): both")
    e.add_argument("--image-size", type=image_size, help=f"fixed input size (default: the checkpoint's, else {IMAGE_SIZE})")
    e.set_defaults(func=_export)

    b = subparsers.add_parser(
        "bench", help="inference speed: frames/s, peak memory, GFLOPs of stream vs clips (accuracy: compare)",
        description="Each configuration runs in a fresh process (peak RSS is per process), once per round, in "
        "--rounds interleaved rounds. Writes --json and "
        "the same report as markdown beside it; appends to a shared document only with --docs.",
    )
    b.add_argument("--encoders", nargs="+", default=["res2net50_26w_4s", "resnet18"],
                   help="timm encoders, random weights (default: res2net50_26w_4s resnet18)")
    b.add_argument("--image-size", type=image_size, default=IMAGE_SIZE, help=f"model input size (default {IMAGE_SIZE}, the paper's)")
    b.add_argument("--frames", type=positive_int, default=8, help="output frames per timed run (default 8)")
    b.add_argument("--runs", type=positive_int, default=5, help="timed runs; the median is reported (default 5)")
    b.add_argument("--warmup", type=non_negative_int, default=1, help="untimed warm-up runs (default 1)")
    b.add_argument("--rounds", type=positive_int, default=3,
                   help="interleaved rounds: the whole list of configurations runs this many times round-robin; "
                   "frames/s are medians over rounds, ratios to the authors' model are paired within a round "
                   "(default 3)")
    b.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    b.add_argument("--malloc", default="default", choices=["default", "tuned", "both"],
                   help="glibc allocator of the workers: as this shell (default), tuned "
                   "(MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised), or both")
    b.add_argument("--backends", nargs="+", choices=BACKENDS,
                   help="backends of the streaming and end-to-end rows (default: pytorch and every installed "
                   "exported backend)")
    b.add_argument("--frames-in-flight", type=positive_int, default=1, metavar="N",
                   help="above 1: also a stream row per exported backend with N frames in flight (default 1)")
    b.add_argument("--no-end-to-end", action="store_true",
                   help="skip the end-to-end rows (predict on a synthetic recording: decode ... write, beside the "
                   "model-only stream of the same frames)")
    b.add_argument("--video-size", type=_video_size, default=(1920, 1080), metavar="WxH",
                   help="the end-to-end rows' synthetic recording (default 1920x1080)")
    b.add_argument("--video-frames", type=positive_int, default=32, metavar="N",
                   help="frames of that recording (default 32)")
    b.add_argument("--unfolded", action="store_true",
                   help="also a PyTorch stream row without BatchNorm folding (peak memory beside the folded row)")
    b.add_argument("--authors", default="benchmarks/authors_model_replica.py",
                   help="authors' model replica for the side-by-side row and ratios (default: the repository's "
                   "benchmarks/authors_model_replica.py when present; 'none' to skip)")
    _add_compile(b, "also time a stream row")
    b.add_argument("--json", default="bench-inference.json",
                   help="JSON results file; the markdown report goes beside it (.md) (default: bench-inference.json)")
    b.add_argument("--docs", metavar="FILE", help="also append the markdown section to FILE, e.g. docs/benchmarks.md")
    b.set_defaults(func=_bench, streaming=True)  # measures predict's own thread settings
