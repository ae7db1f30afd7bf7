"""The command line as a user meets it: ``python -m flanet`` and the top-level help."""

from __future__ import annotations

import subprocess
import sys

from flanet import __version__


def test_python_dash_m_flanet_is_the_flanet_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flanet", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"flanet {__version__}"
