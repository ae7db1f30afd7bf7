"""Attention reads shared by the memory methods, in plain PyTorch (no custom CUDA kernels).

* :func:`local_window_attention`: each query pixel attends to a dilated ``(2r+1)^2`` neighbourhood
  in each of T frames (PNS+'s normalized self-attention, whose public code computes it with a CUDA
  kernel, ``sa.cu``); here ``F.unfold`` gathers the neighbourhoods.
* :func:`memory_read`: each query pixel attends to every slot of a memory (STM's space-time memory
  read, Oh et al. ICCV 2019, eq. 1; AFB-URR's feature bank; DPSTT's transformers), with slots marked
  invalid left out, so a batch of videos whose memories hold different numbers of entries is read
  in one batched matrix product.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def unfold_neighbourhoods(x: Tensor, radius: int, dilation: int) -> Tensor:
    """``(N, C, h, w)`` -> ``(N, C, K, h, w)``, ``K = (2r+1)^2``: each pixel's dilated neighbourhood.

    Outside the map the neighbours are zero (PNS+'s kernel gives them a score of 0 and no value).
    """
    n, c, h, w = x.shape
    size = 2 * radius + 1
    cols = F.unfold(x, kernel_size=size, dilation=dilation, padding=radius * dilation)
    return cols.view(n, c, size * size, h, w)


def local_window_attention(query: Tensor, keys: Tensor, values: Tensor, radius: int, dilation: int,
                           scale: float) -> tuple[Tensor, Tensor]:
    """Attention of each query pixel over the dilated neighbourhoods of the same pixel in T frames.

    Args:
        query: ``(B, d, h, w)`` one query map.
        keys: ``(B, T, d, h, w)`` the frames' keys.
        values: ``(B, T, d_v, h, w)`` the frames' values.
        radius: r, the neighbourhood is ``(2r+1) x (2r+1)`` positions.
        dilation: spacing of the neighbourhood positions.
        scale: the scores are divided by it.

    Returns:
        ``(out (B, d_v, h, w), weights (B, T*K, h, w))``: the attention-weighted values and the
        softmax weights over the ``T * (2r+1)^2`` positions.
    """
    b, t, d, h, w = keys.shape
    k_n = unfold_neighbourhoods(keys.flatten(0, 1), radius, dilation).view(b, t, d, -1, h, w)
    v_n = unfold_neighbourhoods(values.flatten(0, 1), radius, dilation).view(b, t, values.shape[2], -1, h, w)
    scores = torch.einsum("bdhw,btdkhw->btkhw", query, k_n).flatten(1, 2) / scale  # (B, T*K, h, w)
    weights = torch.softmax(scores, dim=1)
    out = torch.einsum("bnhw,bdnhw->bdhw", weights, v_n.transpose(1, 2).flatten(2, 3))
    return out, weights


def memory_read(memory_keys: Tensor, memory_values: Tensor, valid: Tensor | None, query_key: Tensor) -> tuple[Tensor, Tensor]:
    """Soft read of a memory by every query pixel: ``softmax_j(k_j . q / sqrt(C_k)) v_j`` (STM eq. 1).

    Args:
        memory_keys: ``(B, N, C_k)`` the memory's N slots.
        memory_values: ``(B, N, C_v)``.
        valid: ``(B, N)`` bool, slots that hold an entry, or ``(B, N, h*w)``, which slots each query pixel
            may read (None: all); a pixel with no slot to read reads 0.
        query_key: ``(B, C_k, h, w)``.

    Returns:
        ``(read (B, C_v, h, w), weights (B, N, h*w))``.
    """
    b, c, h, w = query_key.shape
    scores = torch.bmm(memory_keys, query_key.flatten(2)) / math.sqrt(c)  # (B, N, hw)
    if valid is not None:
        scores = scores.masked_fill(~(valid[:, :, None] if valid.ndim == 2 else valid), float("-inf"))
    weights = torch.softmax(scores.float(), dim=1).to(memory_values.dtype)
    weights = torch.nan_to_num(weights)  # an empty memory: all -inf -> NaN -> 0
    read = torch.bmm(memory_values.transpose(1, 2), weights)  # (B, C_v, hw)
    return read.view(b, -1, h, w), weights
