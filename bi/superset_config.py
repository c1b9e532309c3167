"""Superset's configuration for `make bi` (SUPERSET_CONFIG_PATH points here).

Everything that differs per machine or is secret comes from the environment, set by
`lifecycle_warehouse.bi` from files under `.warehouse/superset/` (mode 0600): nothing
secret is in the repository.
"""

import os

# Signs session cookies and encrypts the stored database passwords: generated once per
# machine by `make bi`.
SECRET_KEY = os.environ["LW_SUPERSET_SECRET_KEY"]
# Superset's own metadata (users, dashboards, charts): a SQLite file under .warehouse/.
SQLALCHEMY_DATABASE_URI = os.environ["LW_SUPERSET_METADATA_URI"]

# A laptop tool on 127.0.0.1: no CDN, no telemetry, no example data.
FEATURE_FLAGS = {"DASHBOARD_RBAC": False, "ENABLE_TEMPLATE_PROCESSING": False}
TALISMAN_ENABLED = False
ENABLE_PROXY_FIX = False
SUPERSET_WEBSERVER_TIMEOUT = 120
SQLLAB_TIMEOUT = 120
# Results are small: no cache server needed.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
DATA_CACHE_CONFIG = CACHE_CONFIG
# BI reads `analytics` through the bi_reader role; uploads and DML make no sense there.
PREVENT_UNSAFE_DB_CONNECTIONS = True

# Tests (LW_SUPERSET_TEST=1) let a headless browser open the dashboard without logging in:
# the Public role then sees what Gamma sees (read-only). Never set in `make bi`.
if os.environ.get("LW_SUPERSET_TEST") == "1":
    PUBLIC_ROLE_LIKE = "Gamma"
    WTF_CSRF_ENABLED = False
