"""``flanet models`` (list the architectures) and ``flanet smoke`` (build and run one)."""

from __future__ import annotations

import argparse
import time

from flanet.models.defaults import DEFAULT_ENCODER


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``models`` and ``smoke`` sub-commands."""
    models = subparsers.add_parser("models", help="list the model names accepted by create_model")
    models.set_defaults(func=_list_models)

    smoke = subparsers.add_parser(
        "smoke", help="build a model and segment a generated clip (checks the install, offline)"
    )
    smoke.add_argument("--model", default="flanet", help="model name (default: flanet)")
    smoke.add_argument("--encoder", default="resnet18", help=f"timm encoder (paper: {DEFAULT_ENCODER})")
    smoke.add_argument("--size", type=int, default=352, help="frame size in pixels (default: 352)")
    smoke.set_defaults(func=_smoke)


def _list_models(args: argparse.Namespace) -> int:
    from flanet.models.registry import list_models, model_spec

    for name in list_models():
        info = model_spec(name).info
        rows = ", ".join(str(row) for row in info.rows) or "-"
        print(f"{name:14s} {info.kind:5s} {rows:55s} {info.description}")
    return 0


def _smoke(args: argparse.Namespace) -> int:
    import torch

    from flanet.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(args.model, encoder=args.encoder).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    # A bright disc on a noisy background moving by two pixels a frame, current frame first.
    yy, xx = torch.meshgrid(torch.arange(args.size), torch.arange(args.size), indexing="ij")
    frames = []
    for k in range(model.num_frames):
        centre = args.size / 2 - 2 * k
        disc = ((yy - centre) ** 2 + (xx - centre) ** 2 < (args.size / 6) ** 2).float()
        frames.append(disc.expand(3, -1, -1) + 0.1 * torch.randn(3, args.size, args.size))
    clip = torch.stack(frames)[None]  # (1, T, 3, H, W)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model(clip)
    seconds = time.perf_counter() - start
    heat = "none" if out.heatmap is None else tuple(out.heatmap.shape)
    print(f"model {args.model} (encoder {args.encoder}, random weights): {params:.1f} M parameters")
    print(f"clip {tuple(clip.shape)} -> mask logits {tuple(out.mask_logits.shape)}, heatmap {heat}")
    print(f"one forward in {seconds * 1000:.0f} ms on {torch.get_num_threads()} CPU threads: install works")
    return 0
