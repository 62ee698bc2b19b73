#!/usr/bin/env bash
# One database and one login role per Maillage service, run once by the postgres image on an empty volume.
#
# Each role owns its database and nothing else; the extensions the migrations use are created here,
# as the superuser, because earthdistance is not a trusted extension.
set -euo pipefail

for service in directory events matching gateway; do
    var="${service^^}_DB_PASSWORD"
    password="${!var:?$var must be set (see .env.example)}"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v role="maillage_$service" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "maillage_$service" \
        -v role="maillage_$service" <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS cube;
CREATE EXTENSION IF NOT EXISTS earthdistance;
CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE EXTENSION IF NOT EXISTS intarray;
ALTER SCHEMA public OWNER TO :"role";
SQL
done
