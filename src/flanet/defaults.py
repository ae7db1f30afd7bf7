"""Defaults taken from the paper, each in one place, importable without torch (``flanet --help`` shows them)."""

#: Side S of the square model input: frames are resized to 352 x 352 (paper, Sec. 4, Implementation details).
IMAGE_SIZE = 352
