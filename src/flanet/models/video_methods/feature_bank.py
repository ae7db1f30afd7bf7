"""AFB-URR's adaptive feature bank (Liang et al., NeurIPS 2020, Sec. 3.2), with a fixed number of slots.

The bank holds key/value pairs of past frames for each class (background and lesion). A new frame's
pairs are *absorbed* (Sec. 3.2.1): a new key whose cosine similarity to its most similar bank key
exceeds ``merge_threshold`` is merged into it (``k <- |k| ((1 - r) k/|k| + r mean(new/|new|))``, the
same for values, rate ``r``); the other new pairs are appended. Each read counts, per slot, how many
query pixels gave it a weight above ``1e-3``; ``log(1 + count)`` accumulates into the slot's usage
(Sec. 3.2.2). When the bank would overflow, the slots with the lowest *least-frequently-used* index
``usage / age`` are dropped.

Deviations (the public code grows a list per video and uses ``torch_scatter``): the bank is a fixed
``(B, classes, slots, C)`` tensor with a validity mask, so a batch of videos is updated in one pass,
memory is flat however long the video, and merging is ``Tensor.index_add_``; eviction keeps the
``slots`` entries of highest priority in one ``topk`` (new entries first, then by LFU index) instead of
raising a threshold step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class FeatureBank:
    """The bank of a batch of videos: ``keys (B, K, N, C_k)``, ``values (B, K, N, C_v)``, ``valid``,
    ``born`` (frame index a slot was written) and ``usage`` ``(B, K, N)``; K classes, N slots."""

    keys: Tensor
    values: Tensor
    valid: Tensor
    born: Tensor
    usage: Tensor

    @classmethod
    def empty(cls, batch: int, classes: int, slots: int, key_channels: int, value_channels: int,
              like: Tensor) -> FeatureBank:
        """An empty bank on ``like``'s device and dtype."""
        zeros = like.new_zeros
        return cls(zeros(batch, classes, slots, key_channels), zeros(batch, classes, slots, value_channels),
                   torch.zeros(batch, classes, slots, dtype=torch.bool, device=like.device),
                   torch.zeros(batch, classes, slots, device=like.device),
                   torch.zeros(batch, classes, slots, device=like.device))

    @property
    def slots(self) -> int:
        return self.keys.shape[2]

    def flat(self) -> tuple[Tensor, Tensor, Tensor]:
        """Keys, values and validity with batch and class merged: ``(B*K, N, C)``, ``(B*K, N)``."""
        return self.keys.flatten(0, 1), self.values.flatten(0, 1), self.valid.flatten(0, 1)

    def count_reads(self, weights: Tensor, threshold: float = 1e-3) -> FeatureBank:
        """Adds ``log(1 + #query pixels with weight > threshold)`` to each slot's usage; ``weights (B*K, N, hw)``."""
        hits = (weights > threshold).sum(dim=2).view_as(self.usage).to(self.usage.dtype)
        return FeatureBank(self.keys, self.values, self.valid, self.born, self.usage + torch.log1p(hits))

    def absorb(self, keys: Tensor, values: Tensor, frame_index: Tensor, merge_threshold: float,
               rate: float) -> FeatureBank:
        """The bank after absorbing a frame's pairs ``keys (B, K, M, C_k)``, ``values (B, K, M, C_v)``.

        ``frame_index (B,)``: the frame's index in each video (its slots' birth; ages are counted from it).
        """
        b, k, m, _ = keys.shape
        n = self.slots
        if m > n:
            raise ValueError(f"a frame gives {m} memory entries but the bank has {n} slots; raise bank_size")
        # merge: the new pairs close to a bank slot move it towards their mean (Sec. 3.2.1)
        unit_bank, unit_new = F.normalize(self.keys, dim=-1), F.normalize(keys, dim=-1)
        similarity = torch.einsum("bknc,bkmc->bkmn", unit_bank, unit_new)
        similarity = similarity.masked_fill(~self.valid[:, :, None, :], -2.0)
        best, nearest = similarity.max(dim=-1)  # (B, K, M)
        close = best > merge_threshold
        weight = close.to(keys.dtype)[..., None]
        index = nearest.flatten(0, 1)  # (BK, M)
        flat_index = (index + torch.arange(b * k, device=keys.device)[:, None] * n).flatten()
        counts = keys.new_zeros(b * k * n).index_add_(0, flat_index, weight.flatten())
        merged = []
        for bank, new in ((self.keys, keys), (self.values, values)):
            unit_sum = bank.new_zeros(b * k * n, bank.shape[-1]).index_add_(
                0, flat_index, (F.normalize(new, dim=-1) * weight).flatten(0, 2))
            mean = unit_sum.view_as(bank) / counts.view(b, k, n, 1).clamp(min=1)
            moved = bank.norm(dim=-1, keepdim=True) * ((1 - rate) * F.normalize(bank, dim=-1) + rate * mean)
            merged.append(torch.where(counts.view(b, k, n, 1) > 0, moved, bank))
        # append the others; when they do not fit, drop the least frequently used slots (Sec. 3.2.2)
        now = frame_index.to(self.born.dtype).view(b, 1, 1)
        lfu = self.usage / (now - self.born).clamp(min=1)
        priority = torch.cat([torch.where(self.valid, lfu, torch.full_like(lfu, -1.0)),
                              torch.where(close, torch.full_like(lfu[..., :1].expand(b, k, m), -1.0),
                                          torch.full_like(lfu[..., :1].expand(b, k, m), float("inf")))], dim=-1)
        keep = priority.topk(n, dim=-1, sorted=False).indices  # (B, K, N)
        valid = torch.cat([self.valid, ~close], dim=-1).gather(-1, keep)

        def pick(old: Tensor, new: Tensor) -> Tensor:
            both = torch.cat([old, new], dim=2)
            if both.ndim == 3:
                return both.gather(2, keep)
            return both.gather(2, keep[..., None].expand(-1, -1, -1, both.shape[-1]))

        born = pick(self.born, now.expand(b, k, m))
        usage = pick(self.usage, torch.zeros_like(self.usage[..., :1]).expand(b, k, m))
        return FeatureBank(pick(merged[0], keys), pick(merged[1], values), valid, born, usage)
