"""What every benchmark script does first: run under the project's virtualenv.

``python benchmarks/<name>.py`` may be started with any python; the benchmarks need the
project's dependencies, so without them the script re-executes itself with ``.venv/bin/python``.
Standard library only (it runs before the venv is there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def use_project_venv() -> None:
    """Re-exec the running script (``sys.argv[0]``) under the project's venv when the current
    python lacks its dependencies; raise ImportError when there is no venv to switch to."""
    venv_python = REPO / ".venv" / "bin" / "python"
    try:
        import structlog  # noqa: F401
    except ImportError:
        if venv_python.exists() and Path(sys.executable) != venv_python:
            os.execv(venv_python, [str(venv_python), sys.argv[0], *sys.argv[1:]])
        raise
