"""Shared test settings: deterministic seeds, no network."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download weights in tests


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
