"""Where the project keeps its local state, jars and data.

Everything a run writes by default lives under one state folder, ``.ntm/`` in
the project root, or ``$NTM_HOME`` when set. Nothing here touches the network.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: The repository root (the folder holding ``setup.py``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Return the project-local state folder (``$NTM_HOME`` or ``<repo>/.ntm``)."""
    return Path(os.environ.get("NTM_HOME") or PROJECT_ROOT / ".ntm").resolve()


def jars_dir() -> Path:
    """Return the folder Maven copies the JVM jars into (``make jars``)."""
    return Path(os.environ.get("NTM_JARS_DIR") or state_dir() / "jars").resolve()


def nltk_data_dir() -> Path:
    """Return the project's own NLTK data folder."""
    return state_dir() / "nltk_data"


def conf_dir() -> Path:
    """Return the configuration root (``$NTM_CONF_DIR`` or ``<repo>/conf``)."""
    return Path(os.environ.get("NTM_CONF_DIR") or PROJECT_ROOT / "conf").resolve()


def git_commit() -> str:
    """Return the current git commit of the project, or ``"unknown"`` outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"
