#!/bin/sh
# docker-compose's `superset` service: migrate Superset's metadata, set the admin login from
# .env, start Superset, then import the dashboard with the warehouse connected as bi_reader.
set -eu
export LW_SUPERSET_SECRET_KEY="${SUPERSET_SECRET_KEY:?set it in .env}"
export LW_SUPERSET_METADATA_URI="sqlite:////app/superset_home/superset.db"
superset db upgrade
superset init
superset fab create-admin --username admin --firstname Lifecycle --lastname Admin \
    --email admin@localhost --password "${BI_ADMIN_PASSWORD:?set it in .env}"
superset fab reset-password --username admin --password "${BI_ADMIN_PASSWORD}"
gunicorn --workers 2 --threads 4 --timeout 120 --bind 0.0.0.0:8088 "superset.app:create_app()" &
server=$!
BI_PORT=8088 python -m lifecycle_warehouse.bi import
wait "$server"
