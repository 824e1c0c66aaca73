"""The vocabulary: the contract between preprocessing, training and scoring.

Preprocessing writes it as ``vocab.txt`` (one word per line, line ``i`` is index
``i``); training reads its size from it; the registered model carries the file,
and the scorer turns tokens into a bag-of-words with :meth:`Vocabulary.to_bow`.
Pure Python and NumPy: nothing here needs Spark.

Example:
    >>> vocab = Vocabulary(["car", "engine", "wheel"])
    >>> indices, values = vocab.to_bow(["wheel", "car", "wheel", "road"])
    >>> indices.tolist(), values.tolist()
    ([0, 2], [1.0, 2.0])
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Union

import numpy as np

PathLike = Union[str, Path]


class Vocabulary:
    """An ordered list of unique words with O(1) word -> index lookups.

    Args:
        words: The words in index order.

    Raises:
        ValueError: when a word is empty, holds a line break or surrounding blanks, or repeats.
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.words: tuple[str, ...] = tuple(words)
        self._index: dict[str, int] = {}
        for i, word in enumerate(self.words):
            if not isinstance(word, str) or not word or word != word.strip() or "\n" in word or "\r" in word:
                raise ValueError(
                    f"vocabulary word {i} is {word!r}: words must be non-empty strings without "
                    "line breaks or surrounding blanks (vocab.txt holds one word per line)."
                )
            if word in self._index:
                raise ValueError(
                    f"vocabulary word {word!r} appears twice (indices {self._index[word]} and {i}): "
                    "each word must be unique."
                )
            self._index[word] = i

    # ------------------------------------------------------------------ file form

    @classmethod
    def from_file(cls, path: PathLike) -> "Vocabulary":
        """Read ``vocab.txt`` (UTF-8, one word per line, in index order).

        Raises:
            FileNotFoundError: naming the path.
            ValueError: for a malformed file (blank or repeated words).
        """
        from ntm_spark.core import storage

        path = path if storage.is_remote(path) else Path(path)
        if not storage.is_file(path):
            raise FileNotFoundError(
                f"vocabulary file {str(path)!r} does not exist: point at the vocab.txt written by `ntm preprocess`."
            )
        text = storage.read_text(path)
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        try:
            return cls(lines)
        except ValueError as err:
            raise ValueError(f"malformed vocabulary file {str(path)!r}: {err}") from err

    def to_text(self) -> str:
        """Return the ``vocab.txt`` content: each word followed by a newline."""
        return "".join(f"{w}\n" for w in self.words)

    def save(self, path: PathLike) -> Path:
        """Write ``vocab.txt`` to ``path`` (parents created) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_text(), encoding="utf-8")
        return path

    @property
    def sha256(self) -> str:
        """The sha256 of the ``vocab.txt`` bytes: the vocabulary's identity in manifests and models."""
        return hashlib.sha256(self.to_text().encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __iter__(self):
        return iter(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    def __hash__(self) -> int:
        return hash(self.words)

    def __repr__(self) -> str:
        head = ", ".join(repr(w) for w in self.words[:5])
        return f"Vocabulary(size={len(self)}, words=[{head}{', ...' if len(self) > 5 else ''}])"

    def index_of(self, word: str) -> int:
        """Return ``word``'s index, or -1 when it is not in the vocabulary."""
        return self._index.get(word, -1)

    def indices_of(self, tokens: Sequence[str]) -> list[int]:
        """Return the vocabulary index of each in-vocabulary token, in order (unknown ones are skipped)."""
        return [i for i in map(self._index.get, tokens) if i is not None]

    def to_bow(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Count the in-vocabulary tokens of one document.

        Args:
            tokens: Normalized tokens (from :mod:`ntm_spark.core.text`); unknown ones are ignored.

        Returns:
            ``(indices, values)``: ascending ``int32`` indices and their ``float32`` counts.
        """
        hits = self.indices_of(tokens)
        if not hits:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float32)
        indices, counts = np.unique(np.asarray(hits, dtype=np.int32), return_counts=True)
        return indices.astype(np.int32, copy=False), counts.astype(np.float32)

    def to_dense(self, tokens: Sequence[str]) -> np.ndarray:
        """Return the ``float32`` count vector of one document, of length ``len(self)``."""
        out = np.zeros(len(self), dtype=np.float32)
        indices, values = self.to_bow(tokens)
        out[indices] = values
        return out
