"""Compatibility: models registered before the layered layout pickled ``ntm_spark.pyfunc_model.NTMPyfuncModel``.

MLflow unpickles a registered pyfunc by its class's module path, so this name must keep
resolving for those versions to load where the current ``ntm_spark`` is imported first
(the stream's and backfill's workers). New code imports :mod:`ntm_spark.serving.pyfunc_model`;
nothing in the project imports this module (``tests/test_architecture.py`` checks).
"""

from ntm_spark.serving.pyfunc_model import NTMPyfuncModel  # noqa: F401

__all__ = ["NTMPyfuncModel"]
