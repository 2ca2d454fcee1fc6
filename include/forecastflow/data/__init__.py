"""Data layer: what a problem is and what its data must look like.

The problem YAML model (``problem``), sources and bundled datasets (``sources``,
``datasets``), the data contract (``validation``), the in-memory series (``series``) and the
data profile (``profile``). May import pandas, numpy, PyYAML, pydantic and
``forecastflow.errors``; ``problem`` reads ``forecastflow.models`` lazily to check family
names. Never imports MLflow, Airflow, FastAPI or the lifecycle, orchestration and serving
layers.
"""
