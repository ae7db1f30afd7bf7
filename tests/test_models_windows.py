"""The causal-window core: hand-built features, windows at the video start and in the middle, any chunking."""

from __future__ import annotations

import pytest
import torch

from flanet.models.windows import CausalWindows, causal_window_indices, frame_features, gather_windows


def _frames(count: int, first: int = 0) -> list[torch.Tensor]:
    """Two levels of per-frame features whose values are the frame's index: (N, 2, 3, 3) and (N, 4, 1, 1)."""
    index = torch.arange(first, first + count, dtype=torch.float32)
    return [index[:, None, None, None].expand(count, 2, 3, 3).clone(), index[:, None, None, None].expand(count, 4, 1, 1).clone()]


def _frame_ids(windows: torch.Tensor) -> list[list[int]]:
    """Which frame each window position holds (every value of a frame's features is its index)."""
    flat = windows.flatten(2)
    assert torch.equal(flat.amin(2), flat.amax(2))
    return flat[:, :, 0].long().tolist()


def test_indices_repeat_the_first_frame_before_the_video_start() -> None:
    assert causal_window_indices(torch.arange(5), 3).tolist() == [[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 2, 1], [4, 3, 2]]
    assert causal_window_indices(torch.tensor([7, 2]), 4).tolist() == [[7, 6, 5, 4], [2, 1, 0, 0]]
    assert causal_window_indices(torch.tensor([0, 3]), 1).tolist() == [[0], [3]]


def test_gather_windows_along_a_frame_dimension_keeps_the_memory_format() -> None:
    level = _frames(6)[0]  # (6, 2, 3, 3), frame i holds i
    windows = gather_windows(level, torch.tensor([0, 1, 5]), 3)
    assert windows.shape == (3, 3, 2, 3, 3)
    assert _frame_ids(windows) == [[0, 0, 0], [1, 0, 0], [5, 4, 3]]
    batched = torch.stack([level, level + 10], dim=0)  # (B=2, L=6, ...): frames along dim 1
    out = gather_windows(batched, torch.tensor([4]), 2, dim=1)
    assert out.shape == (2, 1, 2, 2, 3, 3)
    assert _frame_ids(out[0]) == [[4, 3]] and _frame_ids(out[1]) == [[14, 13]]
    channels_last = level.contiguous(memory_format=torch.channels_last)
    picked = gather_windows(channels_last, torch.tensor([2]), 3)[:, 0]
    assert picked.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("chunks", [[7], [1] * 7, [2, 3, 2], [1, 6], [3, 1, 1, 2]])
def test_chunked_pushes_give_the_windows_of_the_whole_video(chunks: list[int]) -> None:
    windows = CausalWindows(3)
    got: list[list[list[int]]] = [[], []]
    start = 0
    for count in chunks:
        out = windows.push(_frames(count, start))
        assert [level.shape[:2] for level in out] == [(count, 3), (count, 3)]
        for level, ids in zip(out, got):
            ids += _frame_ids(level)
        start += count
    expected = [[0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 2, 1], [4, 3, 2], [5, 4, 3], [6, 5, 4]]
    assert got == [expected, expected] and windows.frames_seen == 7
    assert [windows.distinct_frames(t) for t in range(4)] == [1, 2, 3, 3]


def test_targets_pick_windows_within_a_chunk() -> None:
    windows = CausalWindows(3)
    first = windows.push(_frames(4), torch.tensor([0, 3]))
    assert _frame_ids(first[0]) == [[0, 0, 0], [3, 2, 1]]
    assert [level.shape[0] for level in windows.push(_frames(2, 4), torch.tensor([], dtype=torch.int64))] == [0, 0]
    middle = windows.push(_frames(3, 6), torch.tensor([1]))  # frame 7: the context crossed two pushes
    assert _frame_ids(middle[1]) == [[7, 6, 5]]


def test_one_frame_windows_and_decode_order() -> None:
    single = CausalWindows(1)
    assert _frame_ids(single.push(_frames(2))[0]) == [[0], [1]]
    assert _frame_ids(single.push(_frames(1, 2))[0]) == [[2]]
    window = CausalWindows(3).push(_frames(2))  # windows of frames 0 and 1
    frames = frame_features(window)  # what decode takes: T entries, t first, each per level (M, ...)
    assert len(frames) == 3 and [len(frame) for frame in frames] == [2, 2, 2]
    assert [frame[0][:, 0, 0, 0].tolist() for frame in frames] == [[0, 1], [0, 0], [0, 0]]
    with pytest.raises(ValueError, match="num_frames"):
        CausalWindows(0)
