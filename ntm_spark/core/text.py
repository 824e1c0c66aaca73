r"""The one text normalization: raw document -> lemmatized tokens.

Batch preprocessing (Spark executors), training, the streaming scorer and the
served MLflow model all call :class:`TextNormalizer` (usually through
:func:`get_normalizer`). Nothing else in the project tokenizes text, so the
bag-of-words a model was trained on and the one it is scored on cannot drift.

The rules come in named sets (:data:`TEXT_RULE_SETS`); the dataset manifest records the
name, and every reader builds its normalizer from it (``ntm_spark.core.contract.text_rules_from_manifest``):

``notebook``
    The seed notebook (the SageMaker NTM 20 Newsgroups example):

    1. ``clean`` (optional): :func:`strip_newsgroup_noise` removes the header, quoted
       lines and attributions, and the signature footer.
    2. :func:`tokenize`: lowercase, token pattern ``(?u)\b\w\w+\b``, keep the tokens
       that start with a letter.
    3. Lemmatize each token with NLTK's ``WordNetLemmatizer`` (noun part of speech,
       as in the notebook), through a per-process cache.
    4. Drop a token when its *lemma* is a stop word (``CountVectorizer(tokenizer=LemmaTokenizer(),
       stop_words="english")`` removes stop words from the tokenizer's output), so WordNet's
       noun lemmas of stop words stay: ``was`` -> ``wa``, ``has`` -> ``ha``, ``us`` -> ``u``,
       ``does`` -> ``doe``.

``v1``
    The notebook's rules, and a token is also dropped when its *surface form* is a stop
    word (``wa``, ``ha``, ``u`` are gone). The rules of every dataset and model written
    before rule sets had names: a manifest without a name means ``v1``
    (:data:`LEGACY_TEXT_RULES`), so a served model keeps scoring as it was trained.

``v2`` (the default, :data:`DEFAULT_TEXT_RULES`)
    ``v1`` plus three fixes (issue 18):

    * Encoded blocks are removed after cleaning (:func:`strip_encoded_blocks`): uuencoded
      blocks, base64/BinHex-like runs of long lines without spaces, hex-dump lines, and PGP
      armour (signatures and key blocks; a signed message keeps its text). On 20 Newsgroups
      they made topics of fragments such as ``ax g9v rlk bhj chz a86``.
    * English contractions (:func:`strip_contractions`): a word ending in ``n't`` (``doesn't``,
      ``won't``, ``can't``: auxiliaries, i.e. stop words) is removed whole, and the clitics
      ``'s 'm 're 've 'd 'll`` are cut from their host word (``we've`` -> ``we``), with ASCII
      ``'`` or typographic ``’``. ``v1`` tokenized them into ``doesn``, ``don``, ``isn``,
      ``won``, ``ve``, ``ll``.
    * WordNet's noun lemmatizer returns the *shortest* lemma, which for some forms is another
      word (:func:`v2_lemma`): a lemma of one character is refused (``ms`` -> ``m``, ``os`` ->
      ``o``), a word ending in ``ss`` is its own lemma (``pass`` -> ``pas``), and
      :data:`V2_LEMMA_OVERRIDES` fixes the frequent rest found on 20 Newsgroups (``does`` ->
      ``do``, not ``doe``; ``dos`` and ``des`` stay, not the stop words ``do``/``de``;
      ``uses`` -> ``use``, not ``us``).

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

#: The named rule sets (see the module docstring), oldest first.
TEXT_RULE_SETS = ("notebook", "v1", "v2")
#: The rules new datasets are written with.
DEFAULT_TEXT_RULES = "v2"
#: The rules of a dataset or model whose manifest names none: everything written before issue 18.
LEGACY_TEXT_RULES = "v1"


def resolve_text_rules(rules: Optional[str]) -> str:
    """Check a rule-set name and return it (``None`` -> :data:`DEFAULT_TEXT_RULES`).

    Raises:
        ValueError: for an unknown name, naming the known ones.
    """
    if rules is None:
        return DEFAULT_TEXT_RULES
    if not isinstance(rules, str) or rules.strip().lower() not in TEXT_RULE_SETS:
        raise ValueError(
            f"text_rules={rules!r} is not a known rule set: use one of {list(TEXT_RULE_SETS)} "
            f"({DEFAULT_TEXT_RULES!r} is the default; a newer name needs a newer ntm-spark)."
        )
    return rules.strip().lower()


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


# ----------------------------------------------------------------------------- encoded blocks (v2)

# Cheap first look: only a text with a line that could start or be part of an encoded block
# is split into lines. Ordinary prose never matches (no 40-character run without a blank, no
# armour, no "begin 644"), so most documents cost one regex search.
_ENCODED_HINT_RE = re.compile(
    r"^(?:[^\S\n]*\S{40,}[^\S\n]*$|begin [0-7]{3,4} |[^\S\n]*-----BEGIN PGP |X?M[\x20-\x60]{55,61}$"
    r"|[^\S\n]*(?:[0-9A-Fa-f]{2,8}:?[^\S\n]+){8})",
    re.MULTILINE,
)
#: A uuencode header: ``begin <mode> <name>``.
_UU_BEGIN_RE = re.compile(r"begin [0-7]{3,4} \S")
#: A full uuencoded line (45 bytes: ``M`` and 60 characters), optionally with shar's ``X`` prefix;
#: trailing blanks may have been lost in transit, so 55 to 61 characters follow the ``M``.
_UU_FULL_RE = re.compile(r"X?M[\x20-\x60]{55,61}")
#: Any uuencoded line: a length character and characters of the uuencode alphabet (no lowercase).
_UU_ANY_RE = re.compile(r"X?[\x20-\x60]{1,62}")
#: PGP armour lines.
_PGP_BEGIN_RE = re.compile(r"-----BEGIN PGP ([A-Z ]+)-----")
_PGP_END_RE = re.compile(r"-----END PGP ([A-Z ]+)-----")
#: A "Name: value" header line of PGP armour (``Hash: MD5``, ``Version: 2.2``, ``Comment: ...``).
_ARMOR_HEADER_RE = re.compile(r"[A-Za-z][A-Za-z-]*: .*")
#: Characters in runs that look like words: lowercase runs of 3+, Capitalized words, UPPERCASE runs
#: of 4+ (``LOCAL_LIBRARIES``). In a line of only base64 characters that has lowercase letters,
#: uppercase runs are as likely to be noise, so they do not count there.
_WORDLIKE_RE = re.compile(r"[a-z]{3,}|[A-Z][a-z]{2,}|[A-Z]{4,}")
_WORDLIKE_MIXED_RE = re.compile(r"[a-z]{3,}|[A-Z][a-z]{2,}")
_BASE64_LINE_RE = re.compile(r"[A-Za-z0-9+/]+=*")


def _wordlike_chars(s: str) -> int:
    """Return how many characters of ``s`` lie in runs that look like words (see :data:`_WORDLIKE_RE`)."""
    mixed_base64 = _BASE64_LINE_RE.fullmatch(s) is not None and any("a" <= c <= "z" for c in s)
    return sum(len(m) for m in (_WORDLIKE_MIXED_RE if mixed_base64 else _WORDLIKE_RE).findall(s))
#: The last line of a base64 block: base64 characters with ``=`` padding.
_BASE64_TAIL_RE = re.compile(r"[A-Za-z0-9+/]+={1,2}")
#: A hex-dump line: an optional offset, then 8 or more groups of 2 to 4 hex digits.
_HEX_GROUP_RE = re.compile(r"[0-9A-Fa-f]{2,4}")


def _is_encoded_line(line: str, min_length: int = 40) -> bool:
    """Whether a line looks like encoded data: no blank inside, long, letters and digits, few word-like runs.

    Base64, BinHex, xxencode and btoa lines have no blanks and a mix of letters and digits, and
    random letters rarely form runs that look like words; a path or a URL is mostly such runs
    (``wuarchive.wustl.edu:/pub/msdos``), a separator line (``-----``) has no letters.
    """
    s = line.strip()
    if len(s) < min_length or any(c.isspace() for c in s):
        return False
    if not (any(c.isalpha() for c in s) and any(c.isdigit() for c in s)):
        return False
    if max((s.count(c) for c in set(s) if not c.isalnum()), default=0) > 0.25 * len(s):
        return False  # dot leaders and rules: "CONCLUSION.......25" is a table of contents
    return _wordlike_chars(s) < 0.5 * len(s)


def _is_uu_line(line: str) -> bool:
    """Whether a line is valid uuencode: its length character matches its length (the last line of a block)."""
    s = line.rstrip()
    if _UU_FULL_RE.fullmatch(s) or _UU_FULL_RE.fullmatch(line):
        return True
    if s.startswith("X") and len(s) > 1 and s[1] != "X":
        s = s[1:]  # shar's prefix
    if not s or not _UU_ANY_RE.fullmatch(s):
        return False
    n_bytes = ord(s[0]) - 32
    if n_bytes == 0 or s[0] == "`":
        return len(s) <= 2  # the empty line that closes a block
    expected = 4 * -(-n_bytes // 3)
    return expected - 3 <= len(s) - 1 <= expected + 1  # trailing blanks may be lost; some add a checksum


def _is_uu_body_line(line: str) -> bool:
    """Whether a line is a full uuencoded line that is not mostly words (``MOTOROLA EXPO ...`` is words)."""
    s = line if _UU_FULL_RE.fullmatch(line) else line.rstrip()  # blanks at the end may be data
    if not _UU_FULL_RE.fullmatch(s):
        return False
    return _wordlike_chars(s) < 0.5 * len(s)


def _is_hex_dump_line(line: str) -> bool:
    """Whether a line is a hex dump: 8+ groups of hex digits, most fields hex, some with the letters a-f."""
    fields = line.split("|", 1)[0].split()
    if len(fields) < 8:
        return False
    hex_fields = [f for f in fields if _HEX_GROUP_RE.fullmatch(f.rstrip(":"))]
    return len(hex_fields) >= 8 and len(hex_fields) >= 0.8 * len(fields) and sum(
        1 for f in hex_fields if any(c in "abcdefABCDEF" for c in f)
    ) >= 2


def encoded_line_flags(lines: list[str]) -> list[bool]:
    """Return, for each line, whether :func:`strip_encoded_blocks` removes it.

    Removed, by rule:

    * **PGP armour.** From ``-----BEGIN PGP <kind>-----`` to ``-----END PGP <kind>-----``
      (signatures, public keys, encrypted messages), or, without an end line, the header
      lines, blank lines and encoded lines that follow. ``-----BEGIN PGP SIGNED MESSAGE-----``
      and its ``Hash:`` lines go, the signed text stays.
    * **uuencode.** ``begin <mode> <name>`` with the block after it up to ``end``; and runs
      of at least two full uuencoded lines (``M`` and 60 characters; mostly not words) without
      a ``begin`` line (a multi-part post), with the shorter closing lines that follow them.
    * **Base64 and the like** (BinHex, xxencode, btoa): runs of at least two lines of 40 or more
      characters with no blank, holding letters and digits but few word-like runs
      (:func:`_is_encoded_line`), with the shorter encoded lines that close them.
    * **Hex dumps**: a line of 8 or more groups of hex digits, some with the letters a-f.

    A single line is never removed on its own by the run rules, so one odd line in prose stays.
    """
    n = len(lines)
    drop = [False] * n
    i = 0
    while i < n:
        line = lines[i]
        if len(line) < 11:  # shorter than any line that starts a block ("begin 644 x") or is one
            i += 1
            continue
        stripped = line.strip()
        m = _PGP_BEGIN_RE.fullmatch(stripped)
        if m:
            drop[i] = True
            j = i + 1
            if m.group(1) == "SIGNED MESSAGE":
                while j < n and _ARMOR_HEADER_RE.fullmatch(lines[j].strip()):
                    drop[j] = True
                    j += 1
                i = j
                continue
            end = next((k for k in range(j, n) if _PGP_END_RE.fullmatch(lines[k].strip())), None)
            if end is not None:
                for k in range(j, end + 1):
                    drop[k] = True
                i = end + 1
                continue
            while j < n and (
                not lines[j].strip()
                or _ARMOR_HEADER_RE.fullmatch(lines[j].strip())
                or _is_encoded_line(lines[j], 4)
                or lines[j].strip().startswith("=")
            ):
                drop[j] = True
                j += 1
            i = j
            continue
        if _UU_BEGIN_RE.match(line):
            j = i + 1
            while j < n and not lines[j].strip():
                j += 1
            if j < n and (_UU_FULL_RE.fullmatch(lines[j].rstrip()) or _is_uu_line(lines[j])):
                k = j
                while k < n and lines[k].rstrip() != "end" and (_is_uu_line(lines[k]) or not lines[k].strip()):
                    k += 1
                i = _drop_through_end(lines, drop, i, k)
                continue
        if _is_uu_body_line(line) and i + 1 < n and _is_uu_body_line(lines[i + 1]):
            k = i
            while k < n and _is_uu_body_line(lines[k]):
                k += 1
            while k < n and _is_uu_line(lines[k]):  # the shorter closing lines, "`", then "end"
                k += 1
            i = _drop_through_end(lines, drop, i, k)
            continue
        if _is_encoded_line(line) and i + 1 < n and _is_encoded_line(lines[i + 1]):
            width = len(stripped)
            k = i
            while k < n and _is_encoded_line(lines[k]):
                k += 1
            last = lines[k].strip() if k < n else ""
            if 0 < len(last) <= width and (_is_encoded_line(last, 2) or _BASE64_TAIL_RE.fullmatch(last)):
                k += 1  # the last, shorter line of the block
            for t in range(i, k):
                drop[t] = True
            i = k
            continue
        if _is_hex_dump_line(line):
            drop[i] = True
        i += 1
    return drop


def _drop_through_end(lines: list[str], drop: list[bool], start: int, stop: int) -> int:
    """Mark lines ``start..stop`` dropped, and the uuencode ``end`` line at ``stop`` if there; return the next line."""
    if stop < len(lines) and lines[stop].rstrip() == "end":
        stop += 1
    for t in range(start, stop):
        drop[t] = True
    return stop


def strip_encoded_blocks(text: str) -> str:
    r"""Remove uuencoded, base64-like and hex-dump blocks and PGP armour (the ``v2`` rules).

    See :func:`encoded_line_flags` for the rules. Lines are removed whole, with their
    newlines, so the words of the remaining lines are the same words as before.

    Example:
        >>> strip_encoded_blocks("Here it is:\nbegin 644 a.txt\n#86)C\n`\nend\nEnjoy.")
        'Here it is:\nEnjoy.'
    """
    if not _ENCODED_HINT_RE.search(text):
        return text
    lines = text.split("\n")
    drop = encoded_line_flags(lines)
    if not any(drop):
        return text
    return "\n".join(line for line, d in zip(lines, drop) if not d)


# ----------------------------------------------------------------------------- contractions (v2)

#: The clitics cut from their host word (``'t`` only after ``n``: the negation).
_CLITICS = ("s", "m", "re", "ve", "d", "ll")


def _is_word_char(c: str) -> bool:
    r"""Whether ``c`` matches ``\w`` (letters, digits, marks, underscore)."""
    return _WORD_CHAR_RE.match(c) is not None


_WORD_CHAR_RE = re.compile(r"\w")


def strip_contractions(text: str) -> str:
    r"""Remove English contractions from lowercase ``text`` (the ``v2`` rules).

    A word ending in ``n't`` is an auxiliary or modal with its negation (``doesn't``,
    ``won't``, ``can't``, ``needn't``): every such host is a stop word or carries no topic,
    so the word is removed whole, rather than leaving ``doesn``/``won``/``ca``. The clitics
    ``'s 'm 're 've 'd 'll`` are cut from their host, which the other rules then judge
    (``we've`` -> ``we``, a stop word; ``john's`` -> ``john``). ASCII ``'`` and ``’`` alike.
    An apostrophe that follows no word character, or is not followed by one of these
    clitics and then a word boundary, is left alone (``'quoted'``, ``rock'n'roll``).

    It is the regular expressions ``\b\w+n['’]t\b`` -> ``" "`` then ``(?<=\w)['’](s|m|re|ve|d|ll)\b``
    -> ``""``, computed at each apostrophe instead of at each character (the test pins the two).

    Example:
        >>> strip_contractions("it doesn't matter, we've seen john’s car")
        'it   matter, we seen john car'
    """
    if "\u2019" in text:
        text = text.replace("\u2019", "'")  # an apostrophe is never part of a token
    if "'" not in text:
        return text
    parts = text.split("'")
    out = [parts[0]]
    for part in parts[1:]:
        prev = out[-1]
        if prev and _is_word_char(prev[-1]):
            # "n't": the word before the apostrophe ends in "n" (and has a character before it).
            if part[:1] == "t" and (len(part) == 1 or not _is_word_char(part[1])) and prev[-1] == "n":
                start = len(prev)
                while start and _is_word_char(prev[start - 1]):
                    start -= 1
                if len(prev) - start >= 2:
                    out[-1] = prev[:start] + " "
                    out.append(part[1:])
                    continue
            cut = next(
                (len(c) for c in _CLITICS if part.startswith(c) and (len(part) == len(c) or not _is_word_char(part[len(c)]))),
                0,
            )
            if cut:
                out[-1] = prev + part[cut:]
                continue
        out.append("'" + part)
    # Pieces that were not contractions carry their apostrophe back in front.
    return "".join(out)


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


#: ``v2``: forms whose WordNet noun lemma is another word, found by lemmatizing every token of
#: 20 Newsgroups and listing those whose lemma is a different word that is short or a stop word
#: (counts: occurrences in the cleaned corpus). The rules of :func:`v2_lemma` cover the rest
#: of that list (one-letter lemmas, words ending in ``ss``); regular plurals (``windows`` ->
#: ``window``, ``years`` -> ``year``) are left to WordNet.
V2_LEMMA_OVERRIDES: Mapping[str, str] = {
    "does": "do",  # doe (a female deer); 4,534 times. "do" is a stop word, so it is dropped
    "dos": "dos",  # do, a stop word: MS-DOS vanished; 1,690
    "uses": "use",  # us, a stop word; 623
    "arms": "arms",  # arm: the weapons of talk.politics.guns; 365
    "des": "des",  # de, a stop word: the DES cipher of sci.crypt vanished; 320
    "aids": "aids",  # aid: the disease of sci.med; 251
    "physics": "physics",  # physic (a medicine); 197
    "mars": "mars",  # mar: the planet of sci.space; 158
    "judas": "judas",  # juda; 80
    "species": "species",  # specie (coins); 74
    "kansas": "kansas",  # kansa; 46
}


def v2_lemma(token: str, lemmatize: Callable[[str], str]) -> str:
    """Return the ``v2`` lemma of a lowercase token, given the WordNet noun ``lemmatize``.

    WordNet's lemmatizer returns the *shortest* of its candidate lemmas, which for a few
    forms is another word. ``v2`` keeps WordNet's lemma except:

    1. :data:`V2_LEMMA_OVERRIDES` (``does`` -> ``do``, not ``doe``);
    2. a word ending in ``ss`` is its own lemma: an English plural ``-s`` never follows an
       ``s`` (``pass`` -> ``pas``, ``boss`` -> ``bos``, ``ass`` -> ``as`` are wrong);
    3. a lemma of one character is refused, the token is kept: the token pattern asks for
       two (``ms`` -> ``m``, ``os`` -> ``o``, ``cs`` -> ``c``, ``vs`` -> ``v``).

    Example:
        >>> v2_lemma("ms", lambda t: t[:-1])
        'ms'
    """
    override = V2_LEMMA_OVERRIDES.get(token)
    if override is not None:
        return override
    if token.endswith("ss"):
        return token
    lemma = lemmatize(token)
    return token if len(lemma) < 2 else lemma


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
            a served model can carry its own table (``v2``'s own lemma rules come first).
        cache_size: Most lemmas kept in the per-instance LRU cache.
        rules: The rule set, one of :data:`TEXT_RULE_SETS` (see the module docstring); a
            dataset's or model's is :func:`ntm_spark.core.contract.text_rules_from_manifest`'s.
    """

    def __init__(
        self,
        clean: bool = True,
        stop_words: StopWords = "english",
        lemma_table: Optional[Mapping[str, str]] = None,
        cache_size: int = 1 << 20,
        rules: str = DEFAULT_TEXT_RULES,
    ) -> None:
        if not isinstance(clean, bool):
            raise TypeError(f"clean={clean!r} must be True or False.")
        if cache_size < 1:
            raise ValueError(f"cache_size={cache_size!r} must be >= 1.")
        self.rules = resolve_text_rules(rules)
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
        return {
            "clean": self.clean,
            "stop_words": sorted(self.stop_words),
            "lemma_table": self.lemma_table,
            "rules": self.rules,
        }

    def __setstate__(self, state: dict) -> None:
        # A state pickled before rule sets had names holds the v1 rules.
        self.__init__(
            clean=state["clean"],
            stop_words=state["stop_words"],
            lemma_table=state["lemma_table"],
            rules=state.get("rules", LEGACY_TEXT_RULES),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(rules={self.rules!r}, clean={self.clean!r}, stop_words=<{len(self.stop_words)} words>, "
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
        if self.rules == "v2":
            # Lowercased here, once: the contraction patterns are lowercase.
            tokens = _TOKEN_RE.findall(strip_contractions(strip_encoded_blocks(text).lower()))
        else:
            tokens = raw_tokens(text)  # tokenize()'s rule, with keeps_token resolved once per distinct token
        table = self._token_table
        get = table.get
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
        if not keeps_token(token):
            return ""
        if self.rules == "notebook":
            lemma = self._lemmatize_cached(token)  # the notebook checks only the lemma
        elif token in self.stop_words:
            return ""
        elif self.rules == "v2":
            lemma = v2_lemma(token, self._lemmatize_cached)
        else:
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
    rules: Optional[str] = DEFAULT_TEXT_RULES,
) -> TextNormalizer:
    """Return this process's shared :class:`TextNormalizer` for these settings.

    Spark's Python workers are reused across tasks, so calling this in every
    ``mapInArrow``/``mapInPandas`` batch loads WordNet and fills the lemma cache once per worker.
    A dataset's or model's settings are :func:`ntm_spark.core.contract.text_rules_from_manifest`'s
    (``get_normalizer(**rules)``).
    """
    rules = resolve_text_rules(rules)
    stop_key = stop_words.lower() if isinstance(stop_words, str) else (
        None if stop_words is None else tuple(sorted(resolve_stop_words(stop_words)))
    )
    table_key = None if not lemma_table else tuple(sorted(lemma_table.items()))
    key = (rules, clean, stop_key, table_key)
    normalizer = _NORMALIZERS.get(key)
    if normalizer is None:
        with _NORMALIZERS_LOCK:
            normalizer = _NORMALIZERS.get(key)
            if normalizer is None:
                normalizer = TextNormalizer(clean=clean, stop_words=stop_words, lemma_table=lemma_table, rules=rules)
                _NORMALIZERS[key] = normalizer
    return normalizer


# ----------------------------------------------------------------------------- the JVM scorer's tables


def _ranges(flags: Iterable[bool]) -> list[int]:
    """Return ``[start, end, start, end, ...]`` (end exclusive) of the code points whose flag is set."""
    out: list[int] = []
    start = None
    cp = -1
    for cp, flag in enumerate(flags):
        if flag and start is None:
            start = cp
        elif not flag and start is not None:
            out += [start, cp]
            start = None
    if start is not None:
        out += [start, cp + 1]
    return out


def unicode_tables() -> dict:
    r"""Return this Python's Unicode semantics that the text rules depend on, as code-point tables.

    The JVM scorer (``conf/jvm/src/io/github/ntmspark/scorer``) reads them so that its tokens
    are Python's exactly, rather than Java's own idea of a letter: Python's ``\w`` is
    ``str.isalnum()`` or ``_`` (no combining marks, unlike Java's ``UNICODE_CHARACTER_SET``),
    its ``\s`` includes ``\x1c``-``\x1f``, and ``str.lower()`` follows this Python's Unicode
    version (``unicodedata.unidata_version``), which need not be the JVM's.

    Returns:
        ``word`` (re's ``\w``), ``space`` (re's ``\s``, which is ``str.isspace``), ``alpha``
        (``str.isalpha``), ``digit`` (``str.isdigit``), ``alnum`` (``str.isalnum``), ``cased``
        and ``case_ignorable`` (the two properties of ``str.lower``'s final-sigma rule), each as
        ``[start, end, ...]`` ranges (end exclusive); ``lower``: ``{code point: its lowercase
        string}`` for every code point ``str.lower`` changes on its own (``Σ`` depends on its
        neighbours: the final-sigma rule); and the versions they come from.
    """
    import sys
    import unicodedata

    word_re, space_re = re.compile(r"\w"), re.compile(r"\s")
    chars = [chr(cp) if not 0xD800 <= cp < 0xE000 else "" for cp in range(0x110000)]
    lower = {}
    for cp, c in enumerate(chars):
        if c:
            low = c.lower()
            if low != c:
                lower[str(cp)] = low

    def ignorable(c: str) -> bool:
        # str.lower() turns "AΣ<c>" into final sigma exactly when <c> is case-ignorable or uncased;
        # "AΣ<c>A" keeps "σ" exactly when <c> is case-ignorable or cased: together they tell.
        cased = c.islower() or c.isupper() or c.istitle()
        return ("AΣ" + c).lower()[1] == "ς" if cased else ("AΣ" + c + "A").lower()[1] == "σ"

    return {
        "python": sys.version.split()[0],
        "unicode_version": unicodedata.unidata_version,
        "word": _ranges(bool(c) and word_re.match(c) is not None for c in chars),
        "space": _ranges(bool(c) and space_re.match(c) is not None for c in chars),
        "alpha": _ranges(c.isalpha() for c in chars),
        "digit": _ranges(c.isdigit() for c in chars),
        "alnum": _ranges(c.isalnum() for c in chars),
        "cased": _ranges(bool(c) and (c.islower() or c.isupper() or c.istitle()) for c in chars),
        "case_ignorable": _ranges(bool(c) and ignorable(c) for c in chars),
        "lower": lower,
    }
