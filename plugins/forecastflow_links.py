"""Airflow plugin: an "MLflow run" button on every ForecastFlow training task.

The training tasks push the URL of their DAG run's MLflow parent run to XCom under this link's
key (``forecastflow.orchestration.constants.LINK_KEY``); the link reads it back. The MLflow UI
address is ``FORECASTFLOW_MLFLOW_UI`` (default: the tracking server when ``MLFLOW_TRACKING_URI`` is
http(s), else http://localhost:5000).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from forecastflow.orchestration.constants import LINK_KEY


class MLflowRunLink(BaseOperatorLink):
    name = "MLflow run"

    @property
    def xcom_key(self) -> str:
        return LINK_KEY

    def get_link(self, operator, *, ti_key) -> str:  # noqa: ANN001
        # Called by the API server, which reads XCom from the metadata DB (the task SDK's
        # XCom client only works inside a running task).
        from airflow.serialization.definitions.operatorlink import XComOperatorLink

        return XComOperatorLink(name=self.name, xcom_key=LINK_KEY).get_link(operator,
                                                                           ti_key=ti_key)


class ForecastflowPlugin(AirflowPlugin):
    name = "forecastflow"
    global_operator_extra_links = [MLflowRunLink()]
