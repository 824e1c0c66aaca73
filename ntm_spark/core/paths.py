"""Where the project keeps its local state, jars, data and default config.

Everything a run writes by default lives under one state folder (:func:`state_dir`):

1. ``$NTM_HOME`` when set;
2. else ``<repo>/.ntm`` when the code runs from a checkout (the folder holding ``setup.py``
   and ``conf/base``: :data:`CHECKOUT`);
3. else ``~/.ntm`` (an installed wheel).

A config value that starts with ``.ntm/`` names a path in that folder, whatever the working
directory (:func:`resolve_state_path`, applied by :func:`ntm_spark.core.config.load_config`).

``make jars`` and ``make nltk-data`` always install into the checkout's own ``<repo>/.ntm``
(:data:`INSTALL_DIR`). A state folder that lacks them (a fresh ``$NTM_HOME``) uses those:
:func:`jars_dir` and :func:`nltk_data_search_dirs` fall back to the installed copies, so one
``make`` serves every ``$NTM_HOME``. An installed wheel finds jars through ``$NTM_JARS_DIR``
or ``<state>/jars``, and WordNet through ``ntm data wordnet`` or ``$NLTK_DATA``.

The default config (:func:`conf_dir`) is ``$NTM_CONF_DIR``, else the checkout's ``conf/``,
else the copy of ``conf/base`` that the wheel carries in ``ntm_spark/conf/base`` (setup.py
copies it at build time: ``conf/base`` stays the one source). Nothing here touches the network.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

#: The package's own folder (``ntm_spark/``); the wheel's default config lives in ``conf/base`` under it.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _find_checkout(root: Path) -> Optional[Path]:
    """Return ``root`` when it is a source checkout (``setup.py`` and ``conf/base`` beside the package), else None."""
    return root if (root / "setup.py").is_file() and (root / "conf" / "base").is_dir() else None


#: The repository root when running from a checkout; ``None`` when installed from the wheel.
CHECKOUT: Optional[Path] = _find_checkout(PACKAGE_DIR.parent)

#: The repository root in a checkout (tests and ``make`` use it); ``None`` from a wheel, where nothing needs it.
PROJECT_ROOT: Optional[Path] = CHECKOUT

#: Where ``make jars`` and ``make nltk-data`` install (the Makefile's ``STATE``); ``~/.ntm`` outside a checkout.
INSTALL_DIR = CHECKOUT / ".ntm" if CHECKOUT is not None else Path.home() / ".ntm"

#: A config value starting with this names a path in the state folder (``.ntm/data`` -> ``<state>/data``).
STATE_PREFIX = ".ntm/"

#: URI prefixes after which a relative path may start with :data:`STATE_PREFIX` (``sqlite:///.ntm/mlflow.db``).
_STATE_URI_SCHEMES = ("sqlite:///",)


def state_dir() -> Path:
    """Return the state folder: ``$NTM_HOME``, else ``<repo>/.ntm`` in a checkout, else ``~/.ntm``."""
    return Path(os.environ.get("NTM_HOME") or INSTALL_DIR).resolve()


def resolve_state_path(value: Optional[str]) -> Optional[str]:
    """Return ``value`` with a leading ``.ntm/`` replaced by the state folder; any other value unchanged.

    This is the one rule that puts default paths under ``$NTM_HOME``: ``.ntm/data/x`` becomes
    ``<state>/data/x`` and ``sqlite:///.ntm/mlflow.db`` becomes ``sqlite:///<state>/mlflow.db``.
    Absolute paths, URIs such as ``hdfs://...`` and other relative paths are left as they are
    (a relative path is then relative to the working directory). Idempotent.

    Example:
        >>> resolve_state_path(".ntm/checkpoints/stream")  # doctest: +SKIP  (with NTM_HOME=/srv/ntm)
        '/srv/ntm/checkpoints/stream'
    """
    if not isinstance(value, str):
        return value
    for scheme in ("", *_STATE_URI_SCHEMES):
        if not value.startswith(scheme):
            continue
        rest = value[len(scheme) :]
        if rest == STATE_PREFIX.rstrip("/") or rest.startswith(STATE_PREFIX):
            tail = rest[len(STATE_PREFIX) :]
            resolved = str(state_dir() / tail) if tail else str(state_dir())
            return f"{scheme}{resolved}"
    return value


def _holds_jars(folder: Path) -> bool:
    return (folder / ".resolved").is_file() or any((folder / sub).is_dir() for sub in ("spark", "kafka"))


def jars_dir() -> Path:
    """Return the folder holding the JVM jars (``make jars``).

    ``$NTM_JARS_DIR`` when set; else ``<state>/jars`` when it holds jars; else the jars
    ``make jars`` installed in ``<repo>/.ntm/jars`` when there are some (a fresh ``$NTM_HOME``);
    else ``<state>/jars``, which error messages then name.
    """
    if os.environ.get("NTM_JARS_DIR"):
        return Path(os.environ["NTM_JARS_DIR"]).resolve()
    own = state_dir() / "jars"
    installed = INSTALL_DIR.resolve() / "jars"
    if not _holds_jars(own) and _holds_jars(installed):
        return installed
    return own


def nltk_data_dir() -> Path:
    """Return the state folder's NLTK data folder, where ``ntm data wordnet`` installs by default."""
    return state_dir() / "nltk_data"


def nltk_data_search_dirs() -> list[Path]:
    """Return the project's NLTK data folders, searched in order: the state folder's, then ``make nltk-data``'s."""
    dirs = [nltk_data_dir()]
    installed = INSTALL_DIR.resolve() / "nltk_data"
    if installed != dirs[0]:
        dirs.append(installed)
    return dirs


def install_hint(target: str) -> str:
    """Return the one command that installs ``target`` (``jars`` or ``nltk-data``) where every state folder finds it."""
    if CHECKOUT is not None:
        return f"make -C {CHECKOUT} {target}"
    if target == "nltk-data":
        return "ntm data wordnet"
    return f"make {target} in a checkout of ntm-spark, then export NTM_JARS_DIR=<checkout>/.ntm/{target}"


def packaged_conf_dir() -> Path:
    """Return the default config the package carries (``ntm_spark/conf``, a build-time copy of ``conf/base``)."""
    return PACKAGE_DIR / "conf"


def conf_dir() -> Path:
    """Return the configuration root: ``$NTM_CONF_DIR``, else ``<repo>/conf`` in a checkout, else the packaged copy."""
    if os.environ.get("NTM_CONF_DIR"):
        return Path(os.environ["NTM_CONF_DIR"]).resolve()
    return (CHECKOUT / "conf" if CHECKOUT is not None else packaged_conf_dir()).resolve()


def git_commit() -> str:
    """Return the current git commit of the project, or ``"unknown"`` outside a checkout."""
    if CHECKOUT is None:
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=CHECKOUT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"
