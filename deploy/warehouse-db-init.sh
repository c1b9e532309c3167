#!/bin/sh
# Roles and databases of the compose `warehouse-db` server (least privilege, issue 24).
#
# The postgres image runs this once, on the first start of an empty data volume, from
# /docker-entrypoint-initdb.d/ (docker-compose.yaml mounts it there), as the superuser
# (POSTGRES_USER) on the image's temporary unix-socket server. The passwords come from the
# warehouse-db service's environment, never from this file:
#
#   warehouse_owner  WAREHOUSE_OWNER_PASSWORD  LOGIN, not superuser; owns the database
#                    `warehouse` (so every schema the pipeline, dbt and the publish create in
#                    it). The DAGs and dbt connect as this role (WAREHOUSE_URL).
#   shop_reader      SHOP_READER_PASSWORD      LOGIN; CONNECT on `shop`, USAGE on its schema
#                    public, SELECT on its tables (today's and, by default privileges, those
#                    shop_owner creates later); every session read-only by default
#                    (default_transaction_read_only). SHOP_DB_URL of the Airflow services.
#   shop_owner       SHOP_OWNER_PASSWORD       owns the demo `shop` database, for whoever fills
#                    it (the simulator); no Airflow service gets it. Unset or empty: the role
#                    exists but cannot log in.
#   bi_reader        is created by airflow-init (lifecycle_warehouse.deploy_init, with
#                    BI_READER_PASSWORD): it reads the schema `analytics` and nothing else.
#
# PUBLIC may not connect to `warehouse`, `shop` or `postgres`: each role reaches only the
# database it was granted. Every statement is idempotent, so the script can be run again
# by hand against a running server (psql's PGHOST / PGPORT / PGPASSWORD select it):
#
#   WAREHOUSE_OWNER_PASSWORD=… SHOP_READER_PASSWORD=… POSTGRES_USER=postgres \
#     sh deploy/warehouse-db-init.sh
#
# The image sources this file when it is not executable: everything runs in a subshell, so
# that `set -eu` and the variables below never leak into the image's entrypoint.
(
set -eu
: "${WAREHOUSE_OWNER_PASSWORD:?set WAREHOUSE_OWNER_PASSWORD (in .env)}"
: "${SHOP_READER_PASSWORD:?set SHOP_READER_PASSWORD (in .env)}"
shop_owner_login=false
if [ -n "${SHOP_OWNER_PASSWORD:-}" ]; then
    shop_owner_login=true
fi

# Passwords travel as psql variables (-v), quoted by psql itself (:'name'): whatever
# characters they hold, they are literals, never SQL.
psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
    --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v warehouse_owner_password="$WAREHOUSE_OWNER_PASSWORD" \
    -v shop_reader_password="$SHOP_READER_PASSWORD" \
    -v shop_owner_password="${SHOP_OWNER_PASSWORD:-}" \
    -v shop_owner_login="$shop_owner_login" <<'SQL'
-- The passwords below stay out of the server log, whatever logging is configured.
set log_statement = 'none';
set log_min_duration_statement = -1;
set log_min_error_statement = 'panic';

-- Roles: created when missing, then their attributes and passwords (re)set.
select 'create role warehouse_owner'
where not exists (select from pg_roles where rolname = 'warehouse_owner') \gexec
select 'create role shop_reader'
where not exists (select from pg_roles where rolname = 'shop_reader') \gexec
select 'create role shop_owner'
where not exists (select from pg_roles where rolname = 'shop_owner') \gexec

alter role warehouse_owner with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls inherit
    password :'warehouse_owner_password';
alter role shop_reader with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls inherit
    password :'shop_reader_password';
-- A safety net on top of the privileges (which alone forbid writing): every transaction
-- of a shop_reader session is read-only unless it asks otherwise.
alter role shop_reader set default_transaction_read_only = on;
\if :shop_owner_login
alter role shop_owner with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls inherit
    password :'shop_owner_password';
\else
alter role shop_owner with nologin nosuperuser nocreatedb nocreaterole noreplication nobypassrls inherit
    password null;
\endif

-- Databases: the warehouse (POSTGRES_DB, created by the image) and the demo shop.
select 'create database warehouse'
where not exists (select from pg_database where datname = 'warehouse') \gexec
select 'create database shop'
where not exists (select from pg_database where datname = 'shop') \gexec
alter database warehouse owner to warehouse_owner;
alter database shop owner to shop_owner;

-- Nobody connects but the roles granted here (and bi_reader, granted by airflow-init).
revoke all on database warehouse from public;
revoke all on database shop from public;
revoke connect, temporary on database postgres from public;
grant connect on database shop to shop_reader;

\connect warehouse
set log_statement = 'none';
-- The owner creates schemas (it owns the database); nobody else creates anything.
revoke create on schema public from public;

\connect shop
set log_statement = 'none';
revoke all on schema public from public;
grant usage on schema public to shop_reader;
grant select on all tables in schema public to shop_reader;
-- Tables created later, by the shop's owner or by the superuser, are readable too.
alter default privileges for role shop_owner in schema public grant select on tables to shop_reader;
alter default privileges in schema public grant select on tables to shop_reader;
SQL
echo "warehouse-db: roles warehouse_owner, shop_reader, shop_owner and databases warehouse, shop ready"
)
