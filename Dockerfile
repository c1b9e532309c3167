# Airflow image with the project's pinned dependencies, for docker-compose.yaml.
# The project's code (dags/, plugins/, dbt_project/, expectations/) is mounted, not copied,
# so edits show up without a rebuild.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY pyproject.toml constraints.txt /opt/lifecycle-warehouse/
# Install the dependencies listed in pyproject.toml, at the versions frozen in constraints.txt.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/opt/lifecycle-warehouse/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt -c /opt/lifecycle-warehouse/constraints.txt \
       "apache-airflow-providers-celery==3.26.0" "celery[redis]==5.6.3"
