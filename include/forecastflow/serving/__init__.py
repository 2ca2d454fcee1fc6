"""Online serving: the REST API over every problem's champion.

Request and response models and request checks (``schemas``), the champions being served
with polling and hot swap, without HTTP (``hub``), the champion lookup without the MLflow
client (``lookup``) and the FastAPI application (``app``). Must start before pandas or MLflow
are imported: both are imported lazily, when a model is read or the registry checked. May
import ``lifecycle`` and ``models`` lazily and FastAPI; never imports Airflow or
``orchestration``.
"""
