r"""The document checks: one set of rules, limits and error codes for every path.

Preprocessing drops a document, serving answers 400, the stream dead-letters it and the
backfill marks it, for the same reasons and under the same codes, checked in this order:

| code | rule |
|---|---|
| ``missing_text`` | no text (null, NaN) |
| ``text_not_string`` | the text is a number, list, object... |
| ``empty_text`` | empty, or only ASCII whitespace (``[ \\t\\n\\x0b\\f\\r]``, Java's ``\\s``) |
| ``too_large`` | more than ``max_text_bytes`` UTF-8 bytes (default :data:`MAX_TEXT_BYTES`, 1,000,000) |
| ``binary`` | a NUL character, or more than :data:`BINARY_CONTROL_FRACTION` (10 %) control characters |

:func:`check_text` is the definition (Python: serving, stream workers, backfill). The
preprocessing job applies the same rules as one Spark SQL expression in the JVM
(:func:`ntm_spark.spark.preprocess.document_problem`); ``tests/ntm_spark/core/test_checks.py``
pins the two together with Hypothesis.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Optional

MISSING_TEXT = "missing_text"
TEXT_NOT_STRING = "text_not_string"
EMPTY_TEXT = "empty_text"
TOO_LARGE = "too_large"
BINARY = "binary"
#: The document codes, in the order they are checked.
DOCUMENT_CODES = (MISSING_TEXT, TEXT_NOT_STRING, EMPTY_TEXT, TOO_LARGE, BINARY)

#: The default size limit of one document's text, in UTF-8 bytes, in every path.
MAX_TEXT_BYTES = 1_000_000
#: A text with more than this share of control characters (or any NUL) is binary junk.
BINARY_CONTROL_FRACTION = 0.1
#: Control characters: C0 except tab/newline/vertical tab/form feed/carriage return, DEL, and C1.
CONTROL_CHARS = "[\\x00-\\x08\\x0E-\\x1F\\x7F-\\x9F]"
#: Whitespace that makes a text blank: ASCII only, the same set as Java's ``\\s``.
BLANK_CHARS = " \t\n\x0b\x0c\r"

_CONTROL_RE = re.compile(CONTROL_CHARS)


@dataclass(frozen=True)
class RowError:
    """Why one row could not be used: a stable ``code`` and a message for people."""

    code: str
    message: str


def utf8_size(text: str) -> int:
    """Return the text's size in UTF-8 bytes (a lone surrogate counts as its 3 bytes)."""
    return len(text.encode("utf-8", errors="surrogatepass"))


def is_binary(text: str) -> bool:
    """Whether ``text`` holds a NUL or more than :data:`BINARY_CONTROL_FRACTION` control characters."""
    if _CONTROL_RE.search(text) is None:  # nearly every text: one scan settles it
        return False
    return "\x00" in text or len(_CONTROL_RE.findall(text)) > BINARY_CONTROL_FRACTION * len(text)


def check_text(text: Any, max_text_bytes: int = MAX_TEXT_BYTES, field: str = "text") -> Optional[RowError]:
    """Return why ``text`` cannot be used as a document, or ``None`` (the rules of the module docstring).

    Args:
        text: The document's text, as it arrived.
        max_text_bytes: The size limit in UTF-8 bytes.
        field: The field's name in messages (``text`` for JSON input).
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return RowError(MISSING_TEXT, f"the document has no {field!r} value")
    if not isinstance(text, str):
        return RowError(TEXT_NOT_STRING, f"{field!r} must be a string, got {type(text).__name__}")
    if not text.strip(BLANK_CHARS):
        return RowError(EMPTY_TEXT, f"{field!r} is empty")
    if len(text) * 4 > max_text_bytes and utf8_size(text) > max_text_bytes:
        return RowError(TOO_LARGE, f"{field!r} is larger than max_text_bytes={max_text_bytes}")
    if is_binary(text):
        return RowError(BINARY, f"{field!r} looks binary (a NUL, or over {BINARY_CONTROL_FRACTION:.0%} control characters)")
    return None
