"""Bounds on sizes and rates that no real input reaches: values past them are refused up front, named.

A side of 10^9 pixels or a rate of 10^12 frames/s is a typing slip or a broken header, not a
request: without a bound it is found only when memory runs out or after output folders were made
(issue 22 item 9). Standard library only: the command line imports this module.
"""

from __future__ import annotations

#: Largest model input side in pixels (``--image-size``, ``data.image_size``); the paper uses 352.
MAX_IMAGE_SIZE = 4096
#: Largest synthetic frame side in pixels (``flanet data synth --size``).
MAX_SYNTH_SIZE = 4096
#: Highest frame rate (frames/s) a flag or a file header may state.
MAX_FPS = 1000.0
