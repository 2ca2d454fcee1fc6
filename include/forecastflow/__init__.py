"""ForecastFlow: forecasting problems declared in YAML, trained, audited and promoted by
Airflow and MLflow. The library is importable without Airflow."""

__version__ = "0.1.0"
