"""Lifecycle Warehouse: ingestion, simulation and warehouse logic used by the Airflow DAGs."""
