"""The topic exploration report (``ntm explore``).

:mod:`~ntm_spark.report.explore` writes it and re-exports the public names; ``model``
loads the model, ``data`` scores the split, ``plots`` draws the figures, ``writers``
writes the tables and ``page`` assembles ``index.html`` from ``templates/``.
"""
