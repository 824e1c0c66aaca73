"""Resolve ``ntm train --warm-start`` and its data: the registry reference, and the stream's own Parquet sink.

:func:`prepare_warm_start` turns ``train.warm_start`` into what
:func:`lightning_module.train.train_model` takes: a :class:`~lightning_module.warm_start.WarmStart`
(the champion's local model folder, downloaded from the registry when needed) and a data
folder on the champion's vocabulary (:func:`lightning_module.warm_start.prepare_warm_start_data`).

``--data`` may be a preprocessing output, or the Parquet sink of ``ntm stream``
(``stream.parquet_path``: ``batch_id=<n>`` folders of scored records with their ``text``).
A sink is normalized with the champion's own text rules and vocabulary, by the scorer the
stream used (:class:`~ntm_spark.serving.scoring.TopicScorer`), so the next model trains on
what the stream saw. Documents are de-duplicated by id (the stream is at-least-once), and
a seeded hash of the id puts 10% of them in the validation split.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ntm_spark.core import paths
from ntm_spark.core.config import ConfigError, TrainConfig
from ntm_spark.core.contract import read_manifest, split_files
from ntm_spark.core.schema import ID_COL, MANIFEST_FILE, TEXT_COL, VOCAB_FILE
from ntm_spark.serving.model_loader import ModelLoadError, download_model_folder, parse_model_ref, resolve_version

log = logging.getLogger(__name__)

#: Share of a stream sink's documents held out for validation (by a seeded hash of the id).
SINK_VALIDATION_SHARE = 0.1
#: A warm start's early stopping starts at this epoch (unless min_epochs is set). Measured on 20
#: Newsgroups, K=20, 3 seeds (BENCHMARKS.md "Warm start"): 10 -> NPMI 0.351 ± 0.015 (the fresh run on
#: all the data: 0.367 ± 0.004), 90% of ids kept; 15 -> 0.368 ± 0.005, 87% kept; 20 -> 0.371 ± 0.002,
#: 83% kept, at 0.43x / 0.67x the fresh run's time for 15 / 20.
WARM_START_MIN_EPOCHS = 15
#: Texts normalized per step when reading a stream sink.
SINK_CHUNK = 2000


def resolve_champion(model_uri: str, tracking_uri: Optional[str] = None) -> tuple[str, str]:
    """Return ``(local model folder, reference for reports)`` of ``model_uri``.

    A model folder is used where it is; a registry or MLflow reference is resolved to its
    version now and its ``model_folder`` artifact downloaded once into
    ``<state>/warm-start/models/<name>-<version>``.

    Raises:
        ConfigError: when the reference cannot be parsed, resolved or downloaded, naming it and the fix.
    """
    try:
        ref = parse_model_ref(model_uri)
        if ref.kind == "folder":
            return ref.uri, ref.uri
        version = resolve_version(ref, tracking_uri)
    except (ValueError, ModelLoadError) as err:
        raise ConfigError(f"invalid config value train.warm_start.model={model_uri!r}: {err}") from err
    label = f"{ref.uri} (version {version})" if ref.kind in ("alias", "version") else ref.uri
    # Name and version number alone are not unique: another registry (or one recreated at the same
    # URI) has its own version 1. Key the download on the store and the version's run too.
    try:
        key = _registry_key(ref, version, tracking_uri)
    except Exception as err:  # noqa: BLE001 - any registry error is reported with the fix
        raise ConfigError(
            f"cannot look up the warm-start model {label}: {type(err).__name__}: {err}. Check --tracking-uri and "
            "`ntm registry list`, or pass a model folder."
        ) from err
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{ref.name}-{version}-{key}")
    dest = paths.state_dir() / "warm-start" / "models" / safe
    if (dest / "model.pt").is_file():
        return str(dest), label
    work = dest.with_name(f".{safe}.{os.getpid()}.work")
    shutil.rmtree(work, ignore_errors=True)
    try:
        folder = download_model_folder(ref, version, tracking_uri, work)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(folder, dest)
    except Exception as err:  # noqa: BLE001 - any registry/download error is reported with the fix
        raise ConfigError(
            f"cannot download the warm-start model {label}: {type(err).__name__}: {err}. Check --tracking-uri and "
            "`ntm registry list`, or pass a model folder."
        ) from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return str(dest), label


def _registry_key(ref: Any, version: str, tracking_uri: Optional[str]) -> str:
    """A short fingerprint of the registry store and, for a registered version, its run id."""
    import mlflow

    uri = tracking_uri or mlflow.get_tracking_uri()
    run_id = None
    if ref.kind in ("alias", "version"):
        run_id = mlflow.MlflowClient(uri, uri).get_model_version(ref.name, version).run_id
    return _fingerprint(uri, run_id)[:10]


# --------------------------------------------------------------------------- the stream's Parquet sink


def is_stream_sink(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an ``ntm stream`` Parquet sink (``batch_id=<n>`` folders, no ``vocab.txt``)."""
    p = Path(folder)
    return p.is_dir() and not (p / VOCAB_FILE).exists() and any(c.is_dir() and c.name.startswith("batch_id=") for c in p.iterdir())


def _sink_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.glob("batch_id=*/*.parquet") if f.stat().st_size > 0)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _in_validation(doc_id: str, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < SINK_VALIDATION_SHARE


def stream_sink_to_bow(sink: str | os.PathLike, model_folder: str, dest: str | os.PathLike, seed: int = 42) -> dict[str, Any]:
    """Write the texts of an ``ntm stream`` Parquet sink as a bag-of-words data folder on the model's vocabulary.

    Returns:
        What was read: files, records, unique documents, and those dropped (no vocabulary word).

    Raises:
        ConfigError: when the sink holds no file with ``id`` and ``text`` columns, naming it.
    """
    import pyarrow.parquet as pq
    from tqdm import tqdm

    from lightning_module.synthetic import write_csr_split
    from lightning_module.warm_start import DONE_FILE, publish_folder
    from ntm_spark.serving.scoring import TopicScorer

    sink, dest = Path(sink), Path(dest)
    files = _sink_files(sink)
    if not files:
        raise ConfigError(f"the stream sink {str(sink)!r} holds no Parquet file under batch_id=*/: has the stream written to it yet?")
    scorer = TopicScorer.from_model_folder(model_folder)
    seen: set[str] = set()
    rows: dict[str, list] = {"train": [], "validation": []}
    ids: dict[str, list] = {"train": [], "validation": []}
    records = skipped_files = empty = tokens_total = tokens_in = tokens_all = 0
    oov_words: collections.Counter = collections.Counter()
    texts: list[tuple[str, str]] = []
    first_error: Optional[str] = None

    def flush() -> None:
        nonlocal empty, tokens_total, tokens_in, tokens_all
        dense, errors, tokens, _oov = scorer._vectorize_texts([t for _i, t in texts], oov_words)
        tokens_all += int(tokens[tokens > 0].sum())  # every normalized token, the new words' share is of these
        for (doc_id, _t), row, err, n_tok in zip(texts, dense, errors, tokens):
            if err is not None:
                empty += 1
                continue
            split = "validation" if _in_validation(doc_id, seed) else "train"
            nz = np.flatnonzero(row)
            rows[split].append((nz.astype(np.int32), row[nz].astype(np.float32)))
            ids[split].append(doc_id)
            if split == "train":
                tokens_total += int(n_tok)
                tokens_in += int(row.sum())
        texts.clear()

    for f in tqdm(files, desc="read the stream sink", unit="file", disable=None):
        try:
            table = pq.read_table(f, columns=[ID_COL, TEXT_COL])
        except (OSError, KeyError, ValueError) as err:
            skipped_files += 1
            first_error = first_error or f"{f.name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
            log.warning("skipping %s: not a stream sink file with id and text columns (%s)", f, err)
            continue
        for doc_id, text in zip(table.column(ID_COL).to_pylist(), table.column(TEXT_COL).to_pylist()):
            records += 1
            if doc_id is None or text is None or doc_id in seen:
                continue
            seen.add(doc_id)
            texts.append((doc_id, text))
            if len(texts) >= SINK_CHUNK:
                flush()
    if texts:
        flush()
    if skipped_files == len(files):
        # Not "no vocabulary word": no file could be read at all (e.g. a sink written without the text column).
        raise ConfigError(
            f"the stream sink {str(sink)!r} has no readable file with the {ID_COL!r} and {TEXT_COL!r} columns "
            f"({len(files)} files, first: {first_error}): warm-start training reads each record's text; point "
            "--data at a sink that keeps it, or at a preprocessing output."
        )
    if not ids["train"]:
        raise ConfigError(
            f"the stream sink {str(sink)!r} has no document with a word of the model's vocabulary "
            f"({records} records in {len(files)} files): nothing to train on."
        )
    work = dest.with_name(f".{dest.name}.{os.getpid()}.work")
    shutil.rmtree(work, ignore_errors=True)
    splits = {}
    for split in ("train", "validation"):
        if not ids[split]:
            continue
        lens = np.asarray([len(r[0]) for r in rows[split]], dtype=np.int64)
        indptr = np.zeros(len(lens) + 1, np.int64)
        np.cumsum(lens, out=indptr[1:])
        write_csr_split(
            work / split, indptr, np.concatenate([r[0] for r in rows[split]]), np.concatenate([r[1] for r in rows[split]]),
            ids=ids[split],
        )  # fmt: skip
        splits[split] = {"path": split, "documents": len(ids[split]), "files": 1}
    splits["train"].update({"tokens": tokens_total, "in_vocab_tokens": tokens_in})
    shutil.copyfile(Path(model_folder) / VOCAB_FILE, work / VOCAB_FILE)
    facts = {
        "stream_sink": str(sink),
        "files": len(files),
        "unreadable_files": skipped_files,
        "records": records,
        "documents": len(seen),
        "dropped_no_vocabulary_word": empty,
        "new_words": [[w, c] for w, c in oov_words.most_common(50)],
        "new_words_distinct": len(oov_words),
        "new_word_tokens": int(sum(oov_words.values())),
        "tokens": tokens_all,
    }
    manifest = dict(read_manifest(model_folder, required=False) or {})
    manifest.update({"splits": splits, "documents": {"per_split": {s: v["documents"] for s, v in splits.items()}}, "source": facts})
    (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    (work / DONE_FILE).write_text("")
    dest.parent.mkdir(parents=True, exist_ok=True)
    publish_folder(work, dest)
    log.info(
        "stream sink %s: %d records, %d unique documents, %d without a vocabulary word; %d new words (most frequent: %s)",
        sink, records, len(seen), empty, len(oov_words), ", ".join(w for w, _c in oov_words.most_common(10)),
    )  # fmt: skip
    return facts


# --------------------------------------------------------------------------- the whole preparation


def prepare_warm_start(cfg: TrainConfig, tracking_uri: Optional[str] = None) -> tuple[Any, TrainConfig]:
    """Resolve ``cfg.warm_start`` into ``(WarmStart, cfg with data_dir on the champion's vocabulary)``.

    Every DDP rank may run this (Lightning's launcher re-runs the command): the prepared
    folders are named by what went into them and reused once finished.

    Raises:
        ConfigError: for a reference that cannot be resolved, or data that cannot be read, naming the fix.
    """
    from lightning_module.warm_start import (
        DONE_FILE,
        WarmStartError,
        describe_facts,
        load_warm_start,
        prepare_warm_start_data,
        replay_folder,
    )

    ws = cfg.warm_start
    folder, label = resolve_champion(str(ws.model), tracking_uri)
    try:
        warm = load_warm_start(folder, label)
    except WarmStartError as err:
        raise ConfigError(str(err)) from err
    if cfg.num_topics != warm.num_topics:
        log.info("warm start: num_topics=%s from the champion (%s given)", warm.num_topics, cfg.num_topics)
    root = paths.state_dir() / "warm-start" / "data"
    new_data = str(cfg.data_dir)
    sink_facts = None
    if is_stream_sink(new_data):
        files = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in _sink_files(Path(new_data))]
        bow = root / f"sink-{_fingerprint(new_data, files, folder, cfg.seed)}"
        if not (bow / DONE_FILE).is_file():
            stream_sink_to_bow(new_data, folder, bow, cfg.seed)
        sink_facts = (read_manifest(bow) or {}).get("source")
        new_data = str(bow)
    elif not split_files(new_data, "train"):
        raise ConfigError(
            f"invalid config value train.data_dir={new_data!r}: no training split there, and it is not an `ntm stream` "
            "Parquet sink (batch_id=<n> folders); point --data at a preprocessing output or the stream's parquet_path."
        )
    replay = replay_folder(warm, ws.replay_data)
    model_id = (warm.hparams.get("training") or {}).get("data_manifest") or {}
    dest = root / f"ws-{_fingerprint(new_data, replay, ws.replay_fraction, cfg.seed, folder, model_id.get('finished_at'))}"
    try:
        facts = prepare_warm_start_data(
            new_data, warm.vocab, dest, replay, ws.replay_fraction, cfg.seed, base_manifest=read_manifest(folder, required=False)
        )
    except WarmStartError as err:
        raise ConfigError(str(err)) from err
    if sink_facts is not None:
        # The sink was put on the champion's vocabulary as it was read: its new words are counted there
        # (prepare_warm_start_data saw none), and reported where a preprocessing output's are.
        new_tokens = int(sink_facts.get("new_word_tokens") or 0)
        new_words = {
            **(facts.get("new_words") or {}),
            "distinct": int(sink_facts.get("new_words_distinct") or 0),
            "tokens": new_tokens,
            "share_of_new_tokens": round(new_tokens / sink_facts["tokens"], 6) if sink_facts.get("tokens") else None,
            "top": sink_facts.get("new_words") or [],
        }
        facts = {**facts, "stream_sink": sink_facts, "new_words": new_words}
    warm.facts = facts
    log.info("warm start from %s on %s:\n%s", label, cfg.data_dir, describe_facts(facts))
    # The champion is trained already: no KL warm-up from 0, and early stopping from epoch
    # WARM_START_MIN_EPOCHS (measured, BENCHMARKS.md "Warm start"); explicit values win.
    schedule = {
        name: value
        for name, value in (("kl_warmup_epochs", 0), ("min_epochs", WARM_START_MIN_EPOCHS))
        if getattr(cfg, name) is None
    }
    return warm, dataclasses.replace(cfg, data_dir=str(dest), num_topics=warm.num_topics, **schedule)
