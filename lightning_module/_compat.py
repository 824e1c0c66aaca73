"""Import Lightning under either distribution name (``pytorch_lightning`` or ``lightning``)."""

from __future__ import annotations

try:  # the project's pinned distribution
    import pytorch_lightning as pl
except ImportError:  # pragma: no cover - boxes with the unified `lightning` package only
    try:
        import lightning.pytorch as pl  # type: ignore[no-redef]
    except ImportError as err:
        raise ImportError(
            "PyTorch Lightning is not installed: run `pip install -e .[train]` (pytorch-lightning)."
        ) from err

__all__ = ["pl"]
