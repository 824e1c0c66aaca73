"""Where a path setting points: a local folder or a URI on cluster storage, resolved one way.

Every path setting (``data_dir``, ``output_dir``, a model folder...) accepts a local path,
``file://``, ``s3://``/``s3a://``, ``gs://``, ``abfss://`` or ``hdfs://``. The Python side
(the Arrow loader, model folders, manifests, vocabularies, reports) resolves them here,
through ``pyarrow.fs`` (:func:`resolve`), the way Petastorm's filesystem resolver does;
Spark resolves the same strings through Hadoop. Hadoop's ``s3a://``/``s3n://`` are read as
``s3://``. Credentials and endpoints come from the usual environment of each store
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION`` for S3;
``GOOGLE_APPLICATION_CREDENTIALS`` for GCS; ``AZURE_STORAGE_ACCOUNT_*`` for ABFS; the Hadoop
client and ``CLASSPATH`` for HDFS), or from query parameters pyarrow reads
(``s3://bucket/x?endpoint_override=http://host:9000&scheme=http``).

A local path takes the plain :mod:`pathlib` route (no pyarrow call), so local runs behave
exactly as before. Only pyarrow is needed, imported when a URI is first used.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit

PathLike = Union[str, "os.PathLike[str]"]

#: Hadoop's names for S3 that pyarrow knows as ``s3``.
_S3_ALIASES = ("s3a", "s3n")
#: ``C:\\x`` or ``C:/x``: a Windows drive, not a URI scheme.
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(ValueError):
    """A path setting names a store this machine cannot reach; the message says which setting and the fix."""


def scheme_of(path: PathLike) -> str:
    """Return the URI scheme of ``path`` in lower case (``""`` for a local path, ``"file"`` for ``file://``)."""
    text = os.fspath(path)
    if _DRIVE.match(text):
        return ""
    match = _SCHEME.match(text)
    return match.group(1).lower() if match else ""


def is_remote(path: PathLike) -> bool:
    """Whether ``path`` is a URI on a store other than the local disk (``s3://``, ``hdfs://``...)."""
    return scheme_of(path) not in ("", "file")


def local_path(path: PathLike) -> Path:
    """Return a local path or ``file://`` URI as a :class:`~pathlib.Path`.

    Raises:
        StorageError: when ``path`` is a remote URI (use :func:`resolve` or :func:`stage_local` for those).
    """
    text = os.fspath(path)
    scheme = scheme_of(text)
    if scheme == "file":
        return Path(urlsplit(text).path)
    if scheme:
        raise StorageError(f"{text!r} is on {scheme}:// storage, not a local path: stage it with storage.stage_local first.")
    return Path(text)


def normalize_uri(path: PathLike) -> str:
    """Return ``path`` with Hadoop's ``s3a://``/``s3n://`` spelled ``s3://`` (other strings unchanged)."""
    text = os.fspath(path)
    scheme = scheme_of(text)
    if scheme in _S3_ALIASES:
        return "s3" + text[len(scheme) :]
    return text


def resolve(path: PathLike, setting: str = "path") -> tuple[Any, str]:
    """Return ``(pyarrow filesystem, path inside it)`` for a local path or a URI.

    Args:
        path: A local path, ``file://``, ``s3://``/``s3a://``, ``gs://``, ``abfss://`` or ``hdfs://`` URI.
        setting: The setting the path came from, named in error messages.

    Raises:
        StorageError: when pyarrow cannot open that store (unknown scheme, no HDFS client...),
            naming ``setting``, the value and what to install or set.
    """
    import pyarrow.fs as pafs

    if not is_remote(path):
        return pafs.LocalFileSystem(), str(local_path(path).resolve())
    uri = normalize_uri(path)
    try:
        fs, inner = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as err:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise StorageError(
            f"{setting}={os.fspath(path)!r}: pyarrow cannot open {scheme_of(path)}:// storage ({err}). Use a local path or "
            "file://, s3://, gs://, abfss:// or hdfs:// with that store's credentials in the environment "
            "(AWS_* for S3, GOOGLE_APPLICATION_CREDENTIALS for GCS, AZURE_STORAGE_* for ABFS, the Hadoop client for HDFS)."
        ) from err
    return fs, inner.rstrip("/")


def join(base: PathLike, *names: str) -> str:
    """Join file names onto a local path (as :mod:`os.path` does) or onto a URI (with ``/``, keeping its query)."""
    text = os.fspath(base)
    if not is_remote(text):
        return str(local_path(text).joinpath(*names))
    head, sep, query = text.partition("?")
    joined = posixpath.join(head.rstrip("/") if not head.endswith("://") else head, *names)
    return f"{joined}{sep}{query}"


def _info(path: PathLike):
    fs, inner = resolve(path)
    return fs.get_file_info(inner)


def is_file(path: PathLike) -> bool:
    """Whether ``path`` (local or URI) is an existing file."""
    if not is_remote(path):
        return local_path(path).is_file()
    import pyarrow.fs as pafs

    return _info(path).type == pafs.FileType.File


def is_dir(path: PathLike) -> bool:
    """Whether ``path`` (local or URI) is an existing folder (on object stores: a prefix holding objects)."""
    if not is_remote(path):
        return local_path(path).is_dir()
    import pyarrow.fs as pafs

    return _info(path).type == pafs.FileType.Directory


def exists(path: PathLike) -> bool:
    """Whether ``path`` (local or URI) exists."""
    return is_file(path) or is_dir(path)


def read_bytes(path: PathLike) -> bytes:
    """Read a whole file (local or URI)."""
    if not is_remote(path):
        return local_path(path).read_bytes()
    fs, inner = resolve(path)
    with fs.open_input_stream(inner) as handle:
        return handle.read()


def read_text(path: PathLike, encoding: str = "utf-8") -> str:
    """Read a whole text file (local or URI)."""
    return read_bytes(path).decode(encoding)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write a whole file (local or URI), replacing it; a local parent folder must exist."""
    if not is_remote(path):
        local_path(path).write_bytes(data)
        return
    fs, inner = resolve(path)
    with fs.open_output_stream(inner) as handle:
        handle.write(data)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write a whole text file (local or URI), replacing it."""
    write_bytes(path, text.encode(encoding))


def make_dirs(path: PathLike) -> None:
    """Create a folder and its parents (local or URI; a no-op on object stores without folders)."""
    if not is_remote(path):
        local_path(path).mkdir(parents=True, exist_ok=True)
        return
    fs, inner = resolve(path)
    fs.create_dir(inner, recursive=True)


def list_files(folder: PathLike, suffix: str = "", recursive: bool = True) -> list[str]:
    """Return the sorted files under ``folder`` ending with ``suffix``, skipping hidden and ``_`` names.

    Local folders give local paths; URIs give URIs of the same scheme (``s3a://`` in, ``s3a://`` out).
    A missing folder gives ``[]``.
    """
    if not is_remote(folder):
        root = local_path(folder)
        if not root.is_dir():
            return []
        found = root.rglob(f"*{suffix}") if recursive else root.glob(f"*{suffix}")
        return sorted(str(p) for p in found if p.is_file() and not p.name.startswith((".", "_")))
    import pyarrow.fs as pafs

    fs, inner = resolve(folder)
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        return []
    head = os.fspath(folder).partition("?")[0].rstrip("/")
    out = []
    for info in fs.get_file_info(pafs.FileSelector(inner, recursive=recursive)):
        name = posixpath.basename(info.path)
        if info.type != pafs.FileType.File or not name.endswith(suffix) or name.startswith((".", "_")):
            continue
        out.append(head + "/" + posixpath.relpath(info.path, inner))
    return sorted(out)


def modified_time(path: PathLike) -> float:
    """Return a file's modification time in seconds since the epoch (local or URI; 0.0 when the store has none)."""
    if not is_remote(path):
        return local_path(path).stat().st_mtime
    info = _info(path)
    return info.mtime.timestamp() if info.mtime is not None else 0.0


def open_input_file(path: PathLike):
    """Open a file for random access: a local path as itself, a URI as a pyarrow ``NativeFile``.

    The result is what :class:`pyarrow.parquet.ParquetFile`, :func:`numpy.load` and
    :func:`torch.load` accept.
    """
    if not is_remote(path):
        return str(local_path(path))
    fs, inner = resolve(path)
    return fs.open_input_file(inner)


def copy_file(src: PathLike, dst: PathLike) -> None:
    """Copy one file between any two locations (local or URI)."""
    if not is_remote(src) and not is_remote(dst):
        shutil.copyfile(local_path(src), local_path(dst))
        return
    write_bytes(dst, read_bytes(src))


def stage_local(src: PathLike, dest: PathLike, names: tuple[str, ...] = ()) -> Path:
    """Copy a folder on any store to the local folder ``dest`` and return ``dest``.

    Args:
        src: The folder (local or URI).
        dest: A local folder; created if missing.
        names: Only these file names (the ones present); all files, recursively, when empty.

    MLflow's registry, for one, logs artifacts from local files, so a model folder on
    ``s3://`` is staged here first.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if names:
        for name in names:
            if is_file(join(src, name)):
                copy_file(join(src, name), dest / name)
        return dest
    head = os.fspath(src).partition("?")[0].rstrip("/")
    for path in list_files(src):
        rel = path.partition("?")[0][len(head) :].lstrip("/\\")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        copy_file(path, dest / rel)
    return dest


def display(path: PathLike) -> str:
    """Return ``path`` as error messages show it: a local path resolved to absolute, a URI as given."""
    return os.fspath(path) if is_remote(path) else str(local_path(path).resolve())
