"""Model lifecycle: where models, runs and forecasts are kept.

File I/O (``storage``), MLflow runs (``tracking``), the registry with aliases and promotion
(``registry``), the pyfunc input/output contract, serving card and model metadata
(``contract``) and the batch forecast store (``forecast_store``). May import the core layers
(data, models, evaluation) and MLflow. Never imports Airflow, FastAPI or the orchestration and
serving layers.
"""
