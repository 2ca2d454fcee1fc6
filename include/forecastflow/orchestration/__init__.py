"""Orchestration: the only code that knows Airflow's task context.

The light YAML reader and constants for DAG files (``spec``, ``constants``: PyYAML only, DAG
parsing stays fast), the run context (``context``), the stage bodies of the training,
forecast and monitor DAGs (``training``, ``planning``, ``forecast``, ``monitor``) and per-task
thread limits (``threads``). May import every layer below it (data, models, evaluation,
lifecycle) and ``airflow.sdk`` (inside functions). Never imports FastAPI or ``serving``.
DAG files import only this package.
"""
