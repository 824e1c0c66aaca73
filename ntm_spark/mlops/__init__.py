"""MLflow operations: tracking, the registry and its gate."""
