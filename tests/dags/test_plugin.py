"""The Airflow plugin declares the MLflow extra link under the key the DAG pushes."""

from __future__ import annotations

import importlib.util

from tests.dags.conftest import ROOT


def test_plugin_declares_the_mlflow_link():
    spec = importlib.util.spec_from_file_location("forecastflow_links",
                                                  ROOT / "plugins" / "forecastflow_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (link,) = module.ForecastflowPlugin.global_operator_extra_links
    assert link.name == "MLflow run"
    # One constant, defined once: the DAG tasks push under the key the plugin reads.
    from forecastflow.orchestration.constants import LINK_KEY

    assert link.xcom_key == LINK_KEY
    defined = [path for folder in ("include", "dags", "plugins")
               for path in (ROOT / folder).rglob("*.py")
               if "_link_MLflowRunLink" in path.read_text()]
    assert defined == [ROOT / "include/forecastflow/orchestration/constants.py"]
    for dag_file in ("forecastflow_training.py", "forecastflow_forecast.py"):
        assert "push_link(" in (ROOT / "dags" / dag_file).read_text(), dag_file
