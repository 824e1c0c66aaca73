"""Scoring, model loading, the MLflow pyfunc and the `ntm serve` endpoint."""
