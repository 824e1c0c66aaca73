r"""The one text normalization: raw document -> lemmatized tokens.

Batch preprocessing (Spark executors), training, the streaming scorer and the
served MLflow model all call :class:`TextNormalizer` (usually through
:func:`get_normalizer`). Nothing else in the project tokenizes text, so the
bag-of-words a model was trained on and the one it is scored on cannot drift.

The rules follow the seed notebook (the SageMaker NTM 20 Newsgroups example):

1. ``clean`` (optional): :func:`strip_newsgroup_noise` removes the header, quoted
   lines and attributions, and the signature footer.
2. :func:`tokenize`: lowercase, token pattern ``(?u)\b\w\w+\b``, keep the tokens
   that start with a letter.
3. Lemmatize each token with NLTK's ``WordNetLemmatizer`` (noun part of speech,
   as in the notebook), through a per-process cache.
4. Drop stop words. A token is dropped when its surface form *or* its lemma is a
   stop word. The notebook (``CountVectorizer(tokenizer=LemmaTokenizer(),
   stop_words="english")``) only checked the lemma, after lemmatizing, so
   WordNet's noun lemmas of stop words leaked into its vocabulary: ``was`` ->
   ``wa``, ``has`` -> ``ha``, ``us`` -> ``u``, ``less`` stays. Checking the
   surface form as well removes them; it is the one intended difference from
   the notebook. The lemma check keeps sklearn's semantics (stop words are
   removed from the tokenizer's output).

Example:
    >>> normalizer = TextNormalizer(clean=False)
    >>> normalizer.normalize("The parliaments were debating cars and 3D models!")
    ['parliament', 'debating', 'car', 'model']
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Optional, Union

#: scikit-learn's ``ENGLISH_STOP_WORDS`` (318 words, from the Glasgow Information
#: Retrieval Group list), embedded so that serving does not need scikit-learn.
ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    {
    'a', 'about', 'above', 'across', 'after', 'afterwards', 'again', 'against', 'all', 'almost',
    'alone', 'along', 'already', 'also', 'although', 'always', 'am', 'among', 'amongst',
    'amoungst', 'amount', 'an', 'and', 'another', 'any', 'anyhow', 'anyone', 'anything', 'anyway',
    'anywhere', 'are', 'around', 'as', 'at', 'back', 'be', 'became', 'because', 'become',
    'becomes', 'becoming', 'been', 'before', 'beforehand', 'behind', 'being', 'below', 'beside',
    'besides', 'between', 'beyond', 'bill', 'both', 'bottom', 'but', 'by', 'call', 'can', 'cannot',
    'cant', 'co', 'con', 'could', 'couldnt', 'cry', 'de', 'describe', 'detail', 'do', 'done',
    'down', 'due', 'during', 'each', 'eg', 'eight', 'either', 'eleven', 'else', 'elsewhere',
    'empty', 'enough', 'etc', 'even', 'ever', 'every', 'everyone', 'everything', 'everywhere',
    'except', 'few', 'fifteen', 'fifty', 'fill', 'find', 'fire', 'first', 'five', 'for', 'former',
    'formerly', 'forty', 'found', 'four', 'from', 'front', 'full', 'further', 'get', 'give', 'go',
    'had', 'has', 'hasnt', 'have', 'he', 'hence', 'her', 'here', 'hereafter', 'hereby', 'herein',
    'hereupon', 'hers', 'herself', 'him', 'himself', 'his', 'how', 'however', 'hundred', 'i', 'ie',
    'if', 'in', 'inc', 'indeed', 'interest', 'into', 'is', 'it', 'its', 'itself', 'keep', 'last',
    'latter', 'latterly', 'least', 'less', 'ltd', 'made', 'many', 'may', 'me', 'meanwhile',
    'might', 'mill', 'mine', 'more', 'moreover', 'most', 'mostly', 'move', 'much', 'must', 'my',
    'myself', 'name', 'namely', 'neither', 'never', 'nevertheless', 'next', 'nine', 'no', 'nobody',
    'none', 'noone', 'nor', 'not', 'nothing', 'now', 'nowhere', 'of', 'off', 'often', 'on', 'once',
    'one', 'only', 'onto', 'or', 'other', 'others', 'otherwise', 'our', 'ours', 'ourselves', 'out',
    'over', 'own', 'part', 'per', 'perhaps', 'please', 'put', 'rather', 're', 'same', 'see',
    'seem', 'seemed', 'seeming', 'seems', 'serious', 'several', 'she', 'should', 'show', 'side',
    'since', 'sincere', 'six', 'sixty', 'so', 'some', 'somehow', 'someone', 'something',
    'sometime', 'sometimes', 'somewhere', 'still', 'such', 'system', 'take', 'ten', 'than', 'that',
    'the', 'their', 'them', 'themselves', 'then', 'thence', 'there', 'thereafter', 'thereby',
    'therefore', 'therein', 'thereupon', 'these', 'they', 'thick', 'thin', 'third', 'this',
    'those', 'though', 'three', 'through', 'throughout', 'thru', 'thus', 'to', 'together', 'too',
    'top', 'toward', 'towards', 'twelve', 'twenty', 'two', 'un', 'under', 'until', 'up', 'upon',
    'us', 'very', 'via', 'was', 'we', 'well', 'were', 'what', 'whatever', 'when', 'whence',
    'whenever', 'where', 'whereafter', 'whereas', 'whereby', 'wherein', 'whereupon', 'wherever',
    'whether', 'which', 'while', 'whither', 'who', 'whoever', 'whole', 'whom', 'whose', 'why',
    'will', 'with', 'within', 'without', 'would', 'yet', 'you', 'your', 'yours', 'yourself',
    'yourselves',
    }
)

#: The token pattern of the notebook (and of scikit-learn's ``CountVectorizer``).
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
# The same matches, found faster: ``findall`` of a greedy ``\w\w+`` only ever starts at a word's
# first character and ends at its last, so the word boundaries hold by themselves (tested).
_TOKEN_RE = re.compile(r"\w\w+")

#: A blank line (only spaces or tabs): the end of the message header.
_BLANK_LINE_RE = re.compile(r"^[^\S\n]*$", re.MULTILINE)
#: An RFC 822 style header field on the first line: ``From: ...``, ``Subject: ...``, ``X-Mailer: ...``.
_HEADER_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:[^\S\n]", re.MULTILINE)
#: A quoted line (starting, after blanks, with ``>`` or ``|``) or an attribution line
#: ("... writes:", "... wrote:", "In article <...>", "Quoted from ..."), with its newline.
_QUOTE_OR_ATTRIBUTION_RE = re.compile(
    r"^(?:[^\S\n]*[>|]|.*?(?:writes:|wrote:|writes in\b)|[^\S\n]*(?:In article|Quoted from)\b).*(?:\n|\Z)",
    re.MULTILINE,
)
#: A signature separator: ``--`` or a line of dashes only.
_SIGNATURE_SEPARATOR_RE = re.compile(r"^[^\S\n]*-{2,}[^\S\n]*$", re.MULTILINE)
_NEWLINES_RE = re.compile(r"\r\n?")

StopWords = Union[str, Iterable[str], None]


# ----------------------------------------------------------------------------- bytes


def decode_document_bytes(raw: bytes) -> tuple[str, bool]:
    r"""Decode a document's bytes by the project's one rule: UTF-8 when valid, else Latin-1 as a whole.

    The pure-Python twin of :func:`ntm_spark.spark.io.decode_bytes_expr` (which Spark paths use), for
    code that reads bytes without Spark. Latin-1 maps every byte to one character, so no
    document is lost and the bytes can be recovered (``text.encode("latin-1")``).

    Args:
        raw: The document's bytes (``bytes``, ``bytearray`` or ``memoryview``).

    Returns:
        ``(text, fallback)``: ``fallback`` is true when the bytes were not valid UTF-8.

    Raises:
        TypeError: when ``raw`` is not bytes-like (a ``str`` is already decoded).

    Example:
        >>> decode_document_bytes(b"caf\xe9 engine")
        ('café engine', True)
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"raw={raw!r:.60} is a {type(raw).__name__}, not bytes: pass the document's undecoded bytes "
            "(a str is already text)."
        )
    data = bytes(raw)
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("latin-1"), True


# ----------------------------------------------------------------------------- cleaning


def normalize_newlines(text: str) -> str:
    r"""Turn ``\r\n`` and lone ``\r`` into ``\n`` (a few 20 Newsgroups files mix them)."""
    return _NEWLINES_RE.sub("\n", text)


def strip_header(text: str) -> str:
    """Remove the message header: everything up to and including the first blank line.

    Only a text whose first block holds a header field (a ``Name: value`` line,
    as 20 Newsgroups' ``From:``/``Subject:``; some files open with a folded
    continuation line) has a header. A bare body, such as a streamed message
    without mail headers, is kept whole rather than treated as all header
    (scikit-learn's ``strip_newsgroup_header`` would empty it).
    """
    match = _BLANK_LINE_RE.search(text)
    head = text[: match.start()] if match else text
    if not _HEADER_FIELD_RE.search(head):
        return text
    return text[match.end() + 1 :] if match else ""


def strip_quotes(text: str) -> str:
    """Remove quoted lines (starting with ``>`` or ``|``) and "... writes:" attribution lines."""
    return _QUOTE_OR_ATTRIBUTION_RE.sub("", text)


def strip_footer(text: str) -> str:
    """Remove the signature: everything from the last line that is ``--`` or only dashes.

    A separator on the first line is left alone, so a message never loses its whole body.
    """
    last = None
    for last in _SIGNATURE_SEPARATOR_RE.finditer(text):
        pass
    if last is None or last.start() == 0:
        return text
    return text[: last.start()].removesuffix("\n")


def strip_newsgroup_noise(text: str) -> str:
    """Apply the notebook's cleaning: newlines, then header, quotes and footer.

    Args:
        text: A raw Usenet message (header, blank line, body).

    Returns:
        The body without header, quoted lines, attributions and signature.
    """
    return strip_footer(strip_quotes(strip_header(normalize_newlines(text))))


# ----------------------------------------------------------------------------- tokens


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and return its tokens of 2+ word characters that start with a letter.

    Example:
        >>> tokenize("In 1993, X11R5 and 3D_cards were __hot__ (a)!")
        ['in', 'x11r5', 'and', 'were']
    """
    return [t for t in raw_tokens(text) if keeps_token(t)]


def raw_tokens(text: str) -> list[str]:
    """Lowercase ``text`` and return every match of :data:`TOKEN_PATTERN` (before :func:`keeps_token`)."""
    return _TOKEN_RE.findall(text.lower())


def keeps_token(token: str) -> bool:
    """Whether a raw token is kept: it starts with a letter."""
    return token[0].isalpha()


def resolve_stop_words(stop_words: StopWords) -> frozenset[str]:
    """Turn the ``stop_words`` setting into a set of lowercase words.

    Args:
        stop_words: ``"english"`` (the embedded list), ``"none"`` or ``None`` (no
            stop words), or an iterable of words.

    Raises:
        ValueError: for any other string.
        TypeError: for a value that is neither a string nor an iterable of strings.
    """
    if stop_words is None:
        return frozenset()
    if isinstance(stop_words, str):
        key = stop_words.strip().lower()
        if key == "english":
            return ENGLISH_STOP_WORDS
        if key == "none":
            return frozenset()
        raise ValueError(
            f"stop_words={stop_words!r} is not a known list: use 'english', 'none', or a list of words."
        )
    try:
        words = list(stop_words)
    except TypeError as err:
        raise TypeError(
            f"stop_words={stop_words!r} must be 'english', 'none' or a list of words, not {type(stop_words).__name__}."
        ) from err
    bad = [w for w in words if not isinstance(w, str)]
    if bad:
        raise TypeError(f"stop_words holds non-strings {bad[:3]!r}: give a list of words.")
    return frozenset(w.lower() for w in words)


# ----------------------------------------------------------------------------- lemmas


#: The noun part of WordNet that ``_morphy`` reads, saved beside the corpus by the first load.
NOUN_MORPHY_CACHE = "ntm-noun-morphy.json"


def _wordnet_key(root) -> dict:
    """Identify the WordNet files (and NLTK) a morphy cache was built from."""
    from ntm_spark.core.nltk_data import import_nltk

    nltk = import_nltk()

    wn = root / "corpora" / "wordnet"
    files = [wn / "index.noun", wn / "noun.exc"] if (wn / "index.noun").is_file() else [root / "corpora" / "wordnet.zip"]
    return {"nltk": nltk.__version__, "files": [[f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in files]}


def _read_morphy_cache(path, key: dict) -> Optional[dict]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def _write_morphy_cache(path, data: dict) -> None:
    """Best effort, atomic: a read-only data folder only means the next process loads WordNet again."""
    import json
    import os

    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def load_noun_lemmatizer() -> Callable[[str], str]:
    """Return NLTK's ``WordNetLemmatizer().lemmatize`` (noun POS) as a function, loaded quickly.

    NLTK's lemmatizer is the shortest of ``WordNetCorpusReader._morphy(word, "n")``'s lemmas,
    else the word; ``_morphy`` reads only the noun exception list and the set of noun lemma
    forms. The first load builds NLTK's reader (without the Open Multilingual WordNet
    mapping that ``nltk.corpus.wordnet`` also parses: about 4 s per process instead of 6)
    and saves those two pieces as ``corpora/ntm-noun-morphy.json`` (keyed by the WordNet
    files and the NLTK version); later processes, such as every Spark Python worker, read
    that file in well under a second and call NLTK's own ``_morphy`` on it, so the lemmas
    are NLTK's (the tests compare them with ``WordNetLemmatizer``). When NLTK's internals
    differ, it falls back to :func:`ntm_spark.core.nltk_data.load_wordnet_lemmatizer`. It never
    downloads.

    Raises:
        ntm_spark.core.nltk_data.NltkDataError: when WordNet is not installed, naming the fix.
    """
    import types
    import warnings

    from ntm_spark.core.nltk_data import find_wordnet, import_nltk, load_wordnet_lemmatizer

    root = find_wordnet(download=False)
    try:
        import_nltk()
        from nltk.corpus.reader.wordnet import WordNetCorpusReader

        cache = root / "corpora" / NOUN_MORPHY_CACHE
        key = _wordnet_key(root)
        data = _read_morphy_cache(cache, key)
        if data is None:

            class _LemmaOnlyReader(WordNetCorpusReader):
                def map_wn(self, version: str = "wordnet"):
                    return None  # the multilingual mapping: unused for lemmas

            with warnings.catch_warnings():
                # "multilingual functions are not available": expected, we pass no OMW reader.
                warnings.simplefilter("ignore", UserWarning)
                reader = _LemmaOnlyReader(str(root / "corpora" / "wordnet"), None)
            data = {
                "key": key,
                "exceptions": reader._exception_map["n"],
                "forms": sorted(f for f, poses in reader._lemma_pos_offset_map.items() if "n" in poses),
            }
            _write_morphy_cache(cache, data)
        noun = {"n": ()}  # _morphy only asks whether "n" is among a form's parts of speech
        state = types.SimpleNamespace(
            MORPHOLOGICAL_SUBSTITUTIONS=WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS,
            _exception_map={"n": data["exceptions"]},
            _lemma_pos_offset_map=dict.fromkeys(data["forms"], noun),
        )
        morphy = functools.partial(WordNetCorpusReader._morphy, state)
        morphy("warmup", "n")
    except Exception:  # noqa: BLE001 - any NLTK internals change: use the public, slower path
        return load_wordnet_lemmatizer(download=False).lemmatize

    def lemmatize(word: str) -> str:
        lemmas = morphy(word, "n")
        return min(lemmas, key=len) if lemmas else word

    return lemmatize


# ----------------------------------------------------------------------------- normalizer


class TextNormalizer:
    """Raw text -> lemmatized, stop-word-free tokens, with a per-process lemma cache.

    WordNet is loaded lazily, on the first token that is neither in ``lemma_table``
    nor already cached, with :func:`load_noun_lemmatizer`: it never downloads (a
    served model must not), and a missing corpus raises
    :class:`ntm_spark.core.nltk_data.NltkDataError` naming the fix.

    Args:
        clean: Strip newsgroup header, quotes and signature first.
        stop_words: ``"english"``, ``"none"``/``None`` or a list of words.
        lemma_table: Optional ``token -> lemma`` mapping consulted before WordNet, so
            a served model can carry its own table.
        cache_size: Most lemmas kept in the per-instance LRU cache.
    """

    def __init__(
        self,
        clean: bool = True,
        stop_words: StopWords = "english",
        lemma_table: Optional[Mapping[str, str]] = None,
        cache_size: int = 1 << 20,
    ) -> None:
        if not isinstance(clean, bool):
            raise TypeError(f"clean={clean!r} must be True or False.")
        if cache_size < 1:
            raise ValueError(f"cache_size={cache_size!r} must be >= 1.")
        self.clean = clean
        self.stop_words = resolve_stop_words(stop_words)
        self.lemma_table: dict[str, str] = dict(lemma_table or {})
        self._wordnet = None
        self._wordnet_lock = threading.Lock()
        self._lemmatize_cached = functools.lru_cache(maxsize=cache_size)(self._lemmatize_uncached)
        # token -> its output lemma, or "" when the token is dropped (not starting with a letter,
        # a stop word, or lemmatized to one): one dict lookup per token on the hot path.
        self._token_table: dict[str, str] = {}
        self._token_table_size = cache_size

    def __getstate__(self) -> dict:
        # Ship only the settings: each process builds its own WordNet and cache.
        return {"clean": self.clean, "stop_words": sorted(self.stop_words), "lemma_table": self.lemma_table}

    def __setstate__(self, state: dict) -> None:
        self.__init__(clean=state["clean"], stop_words=state["stop_words"], lemma_table=state["lemma_table"])

    def __repr__(self) -> str:
        return (
            f"TextNormalizer(clean={self.clean!r}, stop_words=<{len(self.stop_words)} words>, "
            f"lemma_table=<{len(self.lemma_table)} entries>)"
        )

    def _wordnet_lemmatizer(self) -> Callable[[str], str]:
        if self._wordnet is None:
            with self._wordnet_lock:
                if self._wordnet is None:
                    self._wordnet = load_noun_lemmatizer()
        return self._wordnet

    def _lemmatize_uncached(self, token: str) -> str:
        lemma = self.lemma_table.get(token)
        if lemma is not None:
            return lemma
        return self._wordnet_lemmatizer()(token)

    def lemmatize(self, token: str) -> str:
        """Return the lemma of one lowercase token: ``lemma_table`` first, then WordNet (cached)."""
        return self._lemmatize_cached(token)

    def normalize(self, text: Optional[str]) -> list[str]:
        """Return the lemmatized tokens of one document, stop words removed.

        Args:
            text: The raw document; ``None`` counts as empty.

        Returns:
            Tokens in document order (repeats kept, so they can be counted).
        """
        if not text:
            return []
        if self.clean:
            text = strip_newsgroup_noise(text)
        table = self._token_table
        get = table.get
        tokens = raw_tokens(text)  # tokenize()'s rule, with keeps_token resolved once per distinct token
        lemmas = list(map(get, tokens))
        if None in lemmas:  # tokens not seen yet: resolve each once
            for i, lemma in enumerate(lemmas):
                if lemma is None:
                    token = tokens[i]
                    lemma = get(token)  # a repeat of a token resolved a few lines up
                    if lemma is None:
                        lemma = self._resolve_token(token)
                        if len(table) >= self._token_table_size:
                            table.clear()  # bounded: a stream of ever-new tokens never grows it past cache_size
                        table[token] = lemma
                    lemmas[i] = lemma
        return list(filter(None, lemmas))  # "" marks a dropped token

    def _resolve_token(self, token: str) -> str:
        """Return the output of one raw token: its lemma, or ``""`` when the token is dropped."""
        if not keeps_token(token) or token in self.stop_words:
            return ""
        lemma = self._lemmatize_cached(token)
        return "" if lemma in self.stop_words else lemma

    def normalize_many(self, texts: Iterable[Optional[str]]) -> list[list[str]]:
        """Apply :meth:`normalize` to each text (a list, a pandas Series...)."""
        return [self.normalize(t) for t in texts]

    def cache_info(self) -> functools._CacheInfo:
        """Return the lemma cache's hits, misses and size."""
        return self._lemmatize_cached.cache_info()


_NORMALIZERS: dict[tuple, TextNormalizer] = {}
_NORMALIZERS_LOCK = threading.Lock()


def get_normalizer(
    clean: bool = True,
    stop_words: StopWords = "english",
    lemma_table: Optional[Mapping[str, str]] = None,
) -> TextNormalizer:
    """Return this process's shared :class:`TextNormalizer` for these settings.

    Spark's Python workers are reused across tasks, so calling this in every
    ``mapInArrow``/``mapInPandas`` batch loads WordNet and fills the lemma cache once per worker.
    """
    stop_key = stop_words.lower() if isinstance(stop_words, str) else (
        None if stop_words is None else tuple(sorted(resolve_stop_words(stop_words)))
    )
    table_key = None if not lemma_table else tuple(sorted(lemma_table.items()))
    key = (clean, stop_key, table_key)
    normalizer = _NORMALIZERS.get(key)
    if normalizer is None:
        with _NORMALIZERS_LOCK:
            normalizer = _NORMALIZERS.get(key)
            if normalizer is None:
                normalizer = TextNormalizer(clean=clean, stop_words=stop_words, lemma_table=lemma_table)
                _NORMALIZERS[key] = normalizer
    return normalizer
