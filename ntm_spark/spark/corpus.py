"""Locate the 20 Newsgroups corpus: a configured path, ``$NTM_20NG``, the shared copy, or a download."""

from __future__ import annotations

import logging
import os
import urllib.request
from pathlib import Path
from typing import Optional

from ntm_spark.core.paths import PROJECT_ROOT, state_dir

log = logging.getLogger(__name__)

#: The public by-date archive (used only when no local copy exists and the network allows).
PUBLIC_URL = "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"
ARCHIVE_NAME = "20news-bydate.tar.xz"


class CorpusNotFoundError(FileNotFoundError):
    """No copy of the corpus could be found or fetched."""


def shared_copy() -> Optional[Path]:
    """Return where the workspace keeps the corpus: ``../shared/data/20newsgroups/`` beside the checkout (None from a wheel)."""
    if PROJECT_ROOT is None:
        return None
    return PROJECT_ROOT.parent / "shared" / "data" / "20newsgroups" / ARCHIVE_NAME


def locate_20newsgroups(path: Optional[str] = None, download: bool = True) -> Path:
    """Return a path to the 20 Newsgroups by-date corpus (an archive or an unpacked folder).

    Order: ``path``, then ``$NTM_20NG``, then the shared copy, then a download into ``.ntm/``.

    Raises:
        CorpusNotFoundError: naming every place searched and how to fix it.
    """
    tried = []
    for candidate, origin in ((path, "the configured input_path"), (os.environ.get("NTM_20NG"), "$NTM_20NG")):
        if candidate:
            p = Path(candidate).expanduser()
            if p.exists():
                return p.resolve()
            raise CorpusNotFoundError(f"20 Newsgroups corpus not found at {str(p)!r} ({origin}): check the path.")
    for p in (shared_copy(), state_dir() / "downloads" / "20news-bydate.tar.gz"):
        if p is None:
            continue
        tried.append(str(p))
        if p.exists():
            return p.resolve()
    if download:
        target = state_dir() / "downloads" / "20news-bydate.tar.gz"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            log.info("downloading 20 Newsgroups from %s", PUBLIC_URL)
            urllib.request.urlretrieve(PUBLIC_URL, target)  # noqa: S310 - fixed public URL
            return target
        except OSError as err:
            target.unlink(missing_ok=True)
            log.warning("download of %s failed: %s", PUBLIC_URL, err)
    raise CorpusNotFoundError(
        f"20 Newsgroups corpus not found (searched {tried}). Fix: set input_path (--set input_path=...) "
        f"or NTM_20NG to the by-date archive or folder, or allow the download of {PUBLIC_URL}."
    )
