"""Offline NLTK WordNet data: find it, install it from Debian's files, ship it to executors.

Resolution order for the WordNet corpus NLTK's ``WordNetLemmatizer`` reads:

1. ``$NLTK_DATA`` (any of its ``:``-separated folders holding ``corpora/wordnet``);
2. the state folder's data folder, ``<state>/nltk_data`` (``$NTM_HOME/nltk_data``, filled by
   ``ntm data wordnet`` from Debian's ``wordnet-base`` and ``wordnet-sense-index`` packages);
3. the one ``make nltk-data`` filled, ``<repo>/.ntm/nltk_data``, so a fresh ``$NTM_HOME``
   needs no copy of its own (:func:`ntm_spark.core.paths.nltk_data_search_dirs`);
4. ``nltk.download("wordnet")`` into the state folder, only when allowed
   (never while loading a served model).

Otherwise :class:`NltkDataError` says which command fixes it.
"""

from __future__ import annotations

import importlib.abc
import logging
import os
import shutil
import sys
import tarfile
import threading
from pathlib import Path
from typing import Optional

from ntm_spark.core.paths import INSTALL_DIR, install_hint, nltk_data_dir, nltk_data_search_dirs

log = logging.getLogger(__name__)

#: Where Debian's wordnet-base (and wordnet-sense-index) put WordNet 3.0.
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

#: Files NLTK's WordNetCorpusReader opens (``lexnames`` is generated: Debian does not ship it).
WORDNET_FILES = (
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
    "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "index.sense", "cntlist.rev",
)  # fmt: skip

#: WordNet 3.0's lexicographer files, as in the lexnames(5WN) table: number, name, syntactic category.
LEXNAMES = (
    "adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1", "noun.act 1", "noun.animal 1",
    "noun.artifact 1", "noun.attribute 1", "noun.body 1", "noun.cognition 1",
    "noun.communication 1", "noun.event 1", "noun.feeling 1", "noun.food 1", "noun.group 1",
    "noun.location 1", "noun.motive 1", "noun.object 1", "noun.person 1", "noun.phenomenon 1",
    "noun.plant 1", "noun.possession 1", "noun.process 1", "noun.quantity 1", "noun.relation 1",
    "noun.shape 1", "noun.state 1", "noun.substance 1", "noun.time 1", "verb.body 2",
    "verb.change 2", "verb.cognition 2", "verb.communication 2", "verb.competition 2",
    "verb.consumption 2", "verb.contact 2", "verb.creation 2", "verb.emotion 2", "verb.motion 2",
    "verb.perception 2", "verb.possession 2", "verb.social 2", "verb.stative 2",
    "verb.weather 2", "adj.ppl 3",
)  # fmt: skip


class NltkDataError(RuntimeError):
    """The WordNet data NLTK needs cannot be found or installed."""


def _has_wordnet(root: Path) -> bool:
    corpora = root / "corpora"
    return (corpora / "wordnet" / "index.noun").is_file() or (corpora / "wordnet.zip").is_file()


def candidate_dirs() -> list[Path]:
    """Return the NLTK data folders searched, in order: ``$NLTK_DATA``, the state folder's, ``make nltk-data``'s."""
    dirs = [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    dirs.extend(nltk_data_search_dirs())
    return dirs


def find_wordnet(download: bool = False) -> Path:
    """Return the NLTK data folder that holds WordNet.

    Args:
        download: Try ``nltk.download("wordnet")`` into the project folder when nothing is found.

    Raises:
        NltkDataError: when no WordNet data is found (and a download was not allowed or failed).
    """
    for root in candidate_dirs():
        if _has_wordnet(root):
            return root
    if download:
        target = nltk_data_dir()
        try:
            import nltk

            target.mkdir(parents=True, exist_ok=True)
            ok = nltk.download("wordnet", download_dir=str(target), quiet=True, raise_on_error=True)
        except Exception as err:  # noqa: BLE001 - any network or NLTK error means "offline"
            log.warning("nltk.download('wordnet') failed: %s", err)
            ok = False
        if ok and _has_wordnet(target):
            return target
    searched = ", ".join(str(d) for d in candidate_dirs())
    raise NltkDataError(
        f"NLTK's WordNet data was not found (searched: {searched}). Fix: run `{install_hint('nltk-data')}` "
        "(installs Debian's wordnet-base and wordnet-sense-index, then copies them with "
        f"`ntm data wordnet` into {INSTALL_DIR / 'nltk_data'}, which every NTM_HOME searches), "
        "or point NLTK_DATA at a folder holding corpora/wordnet, "
        "or run python -c \"import nltk; nltk.download('wordnet')\" when online."
    )


def install_wordnet(src: Path = DEBIAN_WORDNET_DIR, dest_root: Optional[Path] = None) -> Path:
    """Copy WordNet 3.0 from Debian's files into ``<dest_root>/corpora/wordnet``.

    NLTK 3.10 refuses symlinked and hard-linked data files, so the files are copied.
    Debian does not ship ``lexnames``: it is written from the lexnames(5WN) table.

    Returns:
        The NLTK data root (``dest_root``), ready for ``NLTK_DATA``.

    Raises:
        NltkDataError: naming the missing file and the Debian package that provides it.
    """
    dest_root = Path(dest_root or nltk_data_dir())
    src = Path(src)
    missing = [name for name in WORDNET_FILES if not (src / name).is_file()]
    if missing:
        pkg = "wordnet-sense-index" if missing == ["index.sense"] else "wordnet-base wordnet-sense-index"
        raise NltkDataError(
            f"WordNet files {missing} are missing from {src}. Fix: apt-get install {pkg} "
            f"(or run `{install_hint('nltk-data')}`)."
        )
    dest = dest_root / "corpora" / "wordnet"
    tmp = dest.with_name("wordnet.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in WORDNET_FILES:
        shutil.copyfile(src / name, tmp / name)
    (tmp / "lexnames").write_text("".join(f"{i:02d}\t{entry.replace(' ', chr(9))}\n" for i, entry in enumerate(LEXNAMES)))
    (tmp / "LICENSE").write_text("WordNet 3.0 (c) Princeton University; see https://wordnet.princeton.edu/license-and-commercial-use\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest_root


def nltk_data_env() -> dict[str, str]:
    """Return the environment that lets any Python process (an executor too) find WordNet.

    Returns an empty mapping when no data is found, so a session still starts; the
    lemmatizer then raises :class:`NltkDataError` where it is used.
    """
    try:
        root = find_wordnet(download=False)
    except NltkDataError:
        return {}
    paths = [str(root)] + [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p and p != str(root)]
    return {"NLTK_DATA": os.pathsep.join(paths)}


def make_archive(dest: Path) -> Path:
    """Pack the WordNet data as ``.tar.gz`` for ``spark-submit --archives nltk_data.tar.gz#nltk_data``.

    On a cluster, set ``spark.executorEnv.NLTK_DATA=./nltk_data`` alongside.
    """
    root = find_wordnet(download=False)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(root / "corpora", arcname="corpora")
    return dest


#: Packages ``import nltk`` pulls in only for optional extras (``nltk.metrics`` imports
#: ``scipy.stats``, ``nltk.classify`` scikit-learn), each inside ``try/except ImportError``.
NLTK_OPTIONAL_IMPORTS = ("scipy", "sklearn")
_IMPORT_LOCK = threading.Lock()


class _SkipImports(importlib.abc.MetaPathFinder):
    """Report the named top-level packages as missing (used only while ``nltk`` imports)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is skipped while nltk imports", name=fullname)
        return None


def import_nltk():
    """Import ``nltk`` for lemmatizing: about 0.2 s instead of 1 s in a fresh process.

    ``nltk/__init__`` imports every subpackage, and two of them import SciPy and
    scikit-learn when installed (0.8 s, most of NLTK's import). Every Spark Python worker
    that lemmatizes pays it on its first task. When neither is imported yet, this imports
    NLTK while reporting them missing, the case NLTK handles itself; they import normally
    afterwards. In that process only NLTK's SciPy/scikit-learn extras are unavailable
    (``nltk.metrics.association``'s Fisher test, ``nltk.classify.SklearnClassifier``): the
    project uses neither. WordNet and the lemmatizer are unaffected.
    """
    if "nltk" in sys.modules:
        return sys.modules["nltk"]
    skipped = tuple(n for n in NLTK_OPTIONAL_IMPORTS if n not in sys.modules)
    with _IMPORT_LOCK:
        finder = _SkipImports(skipped)
        sys.meta_path.insert(0, finder)
        try:
            import nltk
        finally:
            sys.meta_path.remove(finder)
    return nltk


def load_wordnet_lemmatizer(download: bool = False):
    """Return a ready NLTK ``WordNetLemmatizer`` (its corpus loaded now, not on first use).

    Args:
        download: Allow ``nltk.download`` when the data is missing (never in serving).
    """
    root = find_wordnet(download=download)
    import nltk
    from nltk.stem import WordNetLemmatizer

    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    lemmatizer = WordNetLemmatizer()
    lemmatizer.lemmatize("warmup")  # loads the lazy corpus once, here
    return lemmatizer
