"""``flanet models`` (list the architectures) and ``flanet smoke`` (build and run one)."""

from __future__ import annotations

import argparse
import time

from flanet.defaults import IMAGE_SIZE
from flanet.models.defaults import DEFAULT_ENCODER


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``models`` and ``smoke`` sub-commands."""
    models = subparsers.add_parser(
        "models", help="list every registered model: kind, paper rows, parameters and GFLOPs at 352",
        description="List every registered model (built-in and from packages registering on the flanet.models "
        "entry point) with its kind, the rows of FLA-Net's tables it reproduces, its parameters and GFLOPs of one "
        "frame at 352x352 with its default options. Costs are counted on PyTorch's meta device (no computing) and "
        "cached in $FLANET_CACHE_DIR/model-costs.json (default ~/.cache/flanet).")
    models.add_argument("--no-cost", action="store_true", help="list without parameters and GFLOPs (instant)")
    models.set_defaults(func=_list_models)

    smoke = subparsers.add_parser(
        "smoke", help="build a model and segment a generated clip (checks the install, offline)",
        description="Check an installation without data or network: build a model with random weights, segment a "
        "generated clip on the CPU and print its output shapes, parameters and time. Exit 0 when it runs.",
    )
    smoke.add_argument("--model", default="flanet", help="model name, as `flanet models` lists (default: flanet)")
    smoke.add_argument("--encoder", default=None,
                       help="timm encoder (default: resnet18, small and quick, where the model accepts it, else the "
                       f"model's own; FLA-Net's paper: {DEFAULT_ENCODER})")
    smoke.add_argument("--size", type=int, default=IMAGE_SIZE, help=f"frame size in pixels (default: {IMAGE_SIZE})")
    smoke.set_defaults(func=_smoke)


def _list_models(args: argparse.Namespace) -> int:
    from flanet.models.registry import list_models, model_spec

    names = list_models()
    costs = {}
    if not args.no_cost:
        from flanet.models.cost import cached_costs

        costs = cached_costs(names, 352)
    header = ["name", "kind", "paper rows", "encoder", "params (M)", "GFLOPs clip", "GFLOPs stream", "description"]
    lines = [header]
    for name in names:
        spec = model_spec(name)
        rows = ", ".join(str(row) for row in spec.info.rows) or "-"
        cost = costs.get(name)
        figures = [f"{cost.params_m:.1f}", f"{cost.clip_gflops:.1f}", f"{cost.stream_gflops:.1f}"] if cost else ["-"] * 3
        lines.append([name, spec.info.kind, rows, spec.default_encoder, *figures, spec.info.description])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])
    if costs:
        print("\nCosts: one output frame at 352x352 with the default options (FLOPs = 2 x multiply-adds, "
              "torch.utils.flop_counter); clip = every frame of a clip encoded, stream = one new frame encoded "
              "and one decode from cached features (a memory model: with its memory full, and the memory's write).")
    return 0


def _smoke(args: argparse.Namespace) -> int:
    import torch

    from flanet.models.registry import create_model, model_spec

    torch.manual_seed(0)
    if args.encoder is None:  # a quick CNN where the model takes one (a ViT model keeps its own)
        spec = model_spec(args.model)
        args.encoder = "resnet18" if spec.accepts_encoder("resnet18") else spec.default_encoder
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
