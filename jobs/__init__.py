"""Thin entry points: each module has ``main(argv=None) -> int`` and runs under ``spark-submit``."""
