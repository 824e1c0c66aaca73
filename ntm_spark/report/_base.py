"""What the report's modules share: the error class, the path type, the install hint and a limit."""

from __future__ import annotations

import os
from typing import Any, Union

PathLike = Union[str, os.PathLike]

#: At most this many labels (the most frequent) are drawn in the heatmap.
MAX_HEATMAP_LABELS = 40

EXTRA_HINT = "install the report extra with `pip install -e .[explore]`"


class ExploreError(ValueError):
    """The model or the data given to the exploration report cannot be used."""


def check_positive(name: str, value: Any, minimum: int) -> None:
    """Raise :class:`ExploreError` naming ``name`` unless ``value`` is an integer ``>= minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ExploreError(f"{name}={value!r}: use an integer >= {minimum}.")
