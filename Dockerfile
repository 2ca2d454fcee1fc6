# ForecastFlow on Airflow 3: one image for every Airflow component (api-server, scheduler,
# dag-processor, triggerer, Celery workers), the MLflow tracking server and `forecastflow
# serve`. docker-compose.yaml runs it; no secret is baked in (they come from .env).
#
#   docker build -t forecastflow:0.3 .
FROM apache/airflow:3.3.2-python3.11

ENV FORECASTFLOW_ROOT=/opt/forecastflow \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The project's folders belong to the image's airflow user (uid 50000, group 0).
USER 0
RUN mkdir -p /opt/forecastflow/user-problems /opt/forecastflow/state \
        /opt/forecastflow/serving-state /opt/forecastflow/mlflow-auth \
    && chown -R 50000:0 /opt/forecastflow
USER 50000
WORKDIR /opt/forecastflow

# Dependencies first (a layer that changes only with the pins), then the project itself.
COPY --chown=airflow:0 requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 include ./include
COPY --chown=airflow:0 dags ./dags
COPY --chown=airflow:0 plugins ./plugins
# Editable: the shipped problems (include/problems) are found next to the package.
RUN pip install --no-cache-dir --no-deps -e .

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/forecastflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/forecastflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    FORECASTFLOW_PROBLEMS_DIR=/opt/forecastflow/user-problems \
    FORECASTFLOW_HOME=/opt/forecastflow/state

WORKDIR /opt/airflow
