"""How far flanet-authors' closed-form FAM is from the released FFT operations, at a given size.

The released FAM's spectral part is zero in exact arithmetic (docs/model.md, "Running the authors'
released weights"), so ``ffa_compute="closed-form"`` and ``"fft"`` differ only by the FFT's
rounding. This prints the largest differences of mask logits and heatmaps between the two on
random clips, with the same random weights (Res2Net-50 by default)::

    python benchmarks/authors_fam_rounding.py --size 352 --clips 2
"""

from __future__ import annotations

import argparse

import torch

from flanet.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--encoder", default="res2net50_26w_4s")
    args = parser.parse_args()
    torch.manual_seed(0)
    closed = create_model("flanet-authors", encoder=args.encoder).eval()
    fft = create_model("flanet-authors", encoder=args.encoder, ffa_compute="fft").eval()
    fft.load_state_dict(closed.state_dict())
    with torch.no_grad():
        closed.fusion.reduce.bias.normal_(0, 0.1)  # a bias of trained size (default init: about 1e-2)
        fft.fusion.reduce.bias.copy_(closed.fusion.reduce.bias)
        clips = torch.randn(args.clips, 3, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
        a, b = closed(clips), fft(clips)
    mask = (a.mask_logits - b.mask_logits).abs().max().item()
    heat = (a.heatmap - b.heatmap).abs().max().item()
    print(f"{args.encoder} at {args.size}, {args.clips} clips: max |diff| mask logits {mask:.2e} "
          f"(max |logit| {b.mask_logits.abs().max().item():.2f}), heatmap {heat:.2e} "
          f"(max |heatmap| {b.heatmap.abs().max().item():.2f})")


if __name__ == "__main__":
    main()
