"""ntm-spark: neural topic modeling on Spark, PyTorch Lightning, MLflow and Kafka."""

__version__ = "0.1.0"
