"""NTM training: the plain model, the Lightning system, the Parquet data module and the model folder.

Import the submodules directly. ``model`` and ``model_folder`` need only torch and
numpy (serving loads a trained model with them); ``data``, ``system`` and ``train``
also need pytorch-lightning and pyarrow. Nothing here imports pyspark or mlflow.
"""
