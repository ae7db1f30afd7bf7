"""Peak RSS of streaming with each way of folding BatchNorms (issue 28 item 6), one fresh process per way.

Usage: ``python benchmarks/fold_memory.py CHECKPOINT [WAY ...]`` (default: every way, one after the other).

Ways: ``unfolded`` (no folding: the reference), ``owned`` (a segmenter built from the checkpoint folds the
model it loaded in place: flanet predict), ``copy`` (a segmenter given a model folds a copy that shares the
model's other tensors), ``old`` (before issue 28: a deep copy of the model, then torch.fx's ``fuse`` with its
own deep copy of the backbone). Each process loads the checkpoint, builds the segmenter on the CPU at 352 x 352
and streams 4 frames; it prints its ``ru_maxrss``.
"""

from __future__ import annotations

import copy
import json
import resource
import subprocess
import sys

WAYS = ("unfolded", "owned", "copy", "old")


def measure(way: str, checkpoint: str) -> dict[str, object]:
    """Stream 4 frames with ``way`` in this process; its peak RSS."""
    import numpy as np
    from torch.fx.experimental.optimization import fuse

    from flanet.inference import VideoSegmenter
    from flanet.models import load_checkpoint

    if way == "unfolded":
        segmenter = VideoSegmenter(load_checkpoint(checkpoint).model, 352, "cpu", fold_batchnorm=False)
    elif way == "owned":
        segmenter = VideoSegmenter.from_checkpoint(checkpoint, image_size=352, device="cpu")
    elif way == "copy":
        segmenter = VideoSegmenter(load_checkpoint(checkpoint).model, 352, "cpu")
    elif way == "old":
        model = load_checkpoint(checkpoint).model.eval()
        folded = copy.deepcopy(model)
        folded.encoder.backbone = fuse(folded.encoder.backbone)
        segmenter = VideoSegmenter(folded, 352, "cpu", fold_batchnorm=False)
    else:
        raise ValueError(f"unknown way {way!r}; one of {', '.join(WAYS)}")
    frames = [np.random.default_rng(i).integers(0, 256, (352, 352, 3), dtype=np.uint8) for i in range(4)]
    for _ in segmenter.stream(frames):
        pass
    return {"way": way, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    else:
        for name in sys.argv[2:] or WAYS:
            done = subprocess.run([sys.executable, __file__, "--one", name, sys.argv[1]], capture_output=True,
                                  text=True, check=True)
            print(done.stdout.strip().splitlines()[-1], flush=True)
