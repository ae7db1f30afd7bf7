"""The one colour convention of every flanet figure, overlay video and viewer.

Ground truth is green, the prediction is red, the localisation heatmap (and its peak) is yellow;
model identities in charts use other hues (never green or red) so that a colour always means one
thing. RGB tuples; :func:`bgr` converts for OpenCV.
"""

from __future__ import annotations

TRUTH_RGB: tuple[int, int, int] = (0, 200, 0)
PREDICTION_RGB: tuple[int, int, int] = (255, 40, 40)
HEATMAP_RGB: tuple[int, int, int] = (255, 215, 0)
MODEL_COLOURS: dict[str, str] = {"FLA-Net": "#ff7f0e", "UNet": "#1f77b4"}  # by display name; others grey
OTHER_MODEL_COLOUR = "#555555"
#: Line colours of charts whose series are not models (loss terms, scores): matplotlib's tab10 without
#: its green, red and olive, which would read as ground truth, prediction or heatmap.
SERIES_COLOURS: tuple[str, ...] = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def bgr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """OpenCV's channel order of an RGB colour."""
    return rgb[2], rgb[1], rgb[0]


def hex_colour(rgb: tuple[int, int, int]) -> str:
    """``#rrggbb`` of an RGB colour (for HTML and matplotlib)."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)
