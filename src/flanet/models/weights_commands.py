"""``flanet import-weights`` (another release's weights -> a flanet checkpoint) and ``flanet weights``
(the checkpoints in the Hugging Face cache)."""

from __future__ import annotations

import argparse
from pathlib import Path

#: Weight formats ``flanet import-weights`` converts, with the model they become.
IMPORTERS: dict[str, str] = {"authors": "flanet-authors"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``import-weights`` and ``weights`` sub-commands."""
    importer = subparsers.add_parser(
        "import-weights", help="convert released weights into a flanet checkpoint",
        description="Convert a released checkpoint into a flanet checkpoint. 'authors': the FLA-Net "
                    "weights linked from github.com/jhl-Det/FLA-Net (a state dict, plain, wrapped in a dict "
                    "or with DataParallel's 'module.' prefix), becoming model flanet-authors. The file is "
                    "read with weights_only=True; every key must map (docs/model.md).")
    importer.add_argument("format", choices=sorted(IMPORTERS), help="whose weights: 'authors' (FLA-Net's release)")
    importer.add_argument("file", type=Path, help="the released weights file (.pth)")
    importer.add_argument("--out", type=Path, required=True, help="flanet checkpoint to write (must not exist)")
    importer.add_argument("--ffa-compute", choices=("closed-form", "fft"), default="closed-form",
                          help="how the model computes their FAM (default closed-form: its exact value; "
                               "fft: the released operations, docs/model.md)")
    importer.set_defaults(func=_import_weights)

    weights = subparsers.add_parser(
        "weights", help="list the checkpoints in the Hugging Face cache (hf:// and https:// downloads)",
        description="List the checkpoints that --checkpoint hf://... and https://... (with --sha256) downloaded into "
        "the Hugging Face cache (HF_HOME), with their sizes; nothing is downloaded (docs/model.md).")
    weights.set_defaults(func=_list_weights)


def _import_weights(args: argparse.Namespace) -> int:
    from flanet.models.authors_weights import load_authors_weights
    from flanet.models.checkpoint import save_checkpoint
    from flanet.models.hub import file_sha256
    from flanet.models.registry import create_model

    if args.out.exists():
        raise FileExistsError(17, "output exists; choose another --out or remove it", str(args.out))
    name = IMPORTERS[args.format]
    model = create_model(name, ffa_compute=args.ffa_compute)
    load_authors_weights(model, args.file)
    metadata = {
        "image_size": 352,
        "imported_from": {"format": args.format, "file": args.file.name, "sha256": file_sha256(args.file)},
    }
    save_checkpoint(args.out, model.eval(), metadata)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{args.file} -> {args.out}: model {name} (ffa_compute {args.ffa_compute}), "
          f"{len(model.state_dict())} tensors, {params:.1f} M parameters, input 352x352")
    return 0


def _list_weights(args: argparse.Namespace) -> int:
    from huggingface_hub import constants

    from flanet.models.hub import cached_checkpoints, url_cache_dir

    found = cached_checkpoints()
    print(f"Hugging Face Hub cache: {constants.HF_HUB_CACHE}; https:// downloads: {url_cache_dir()}")
    if not found:
        print("no checkpoints cached (fetch one with e.g. flanet predict --checkpoint hf://<owner>/<repo>/<file>)")
    for entry in found:
        print(f"{entry.size / 1e6:9.1f} MB  {entry.reference}")
    return 0
