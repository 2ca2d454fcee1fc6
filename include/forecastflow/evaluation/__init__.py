"""Evaluation layer: metrics, rolling-origin backtests, the trial search and plots.

Pure functions of data, problems and models: may import ``forecastflow.data``,
``forecastflow.models``, pandas, numpy, statsmodels, scikit-learn and matplotlib. Never
imports MLflow, Airflow, FastAPI or the lifecycle, orchestration and serving layers (a
result's artifacts are written by the caller, through ``lifecycle.storage``).
"""
