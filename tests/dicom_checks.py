"""Checking DICOM files with the standard's validator: dicom3tools' ``dciodvfy`` (Debian ``dicom3tools``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def dciodvfy_errors(path: Path) -> list[str]:
    """The error lines of dicom3tools' validator on ``path`` (warnings are not errors)."""
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy is missing: install Debian's dicom3tools (.ci/run does)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    assert any(line.strip() in ("Segmentation", "Comprehensive3DSR") for line in lines), lines  # it read the IOD
    return [line for line in lines if line.startswith("Error")]
