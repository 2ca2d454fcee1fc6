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
    dag_source = (ROOT / "dags" / "forecastflow_training.py").read_text()
    assert f'LINK_KEY = "{link.xcom_key}"' in dag_source
