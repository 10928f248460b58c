#!/bin/sh
# Applies roles.sql as the PostgreSQL superuser, then gives each role its login and password.
# Used where no operator does it: the dev overlay's db-setup Job and compose's db-setup
# service (in prod, CloudNativePG runs roles.sql at bootstrap and manages the logins).
# Environment: PGHOST, PGUSER, PGPASSWORD, PGDATABASE (libpq), and PW_<COMPONENT>_OWNER /
# PW_<COMPONENT>_APP for the ten roles. Idempotent: run it again after adding a component.
set -eu
here=$(dirname "$0")
until pg_isready -q; do sleep 2; done
psql -v ON_ERROR_STOP=1 -q -f "$here/roles.sql"
for component in gateway identity profile segment campaign; do
  for kind in owner app; do
    variable=$(echo "PW_${component}_${kind}" | tr a-z A-Z)
    eval "password=\${$variable}"
    role="cdp_${component}"
    if [ "$kind" = app ]; then role="${role}_app"; fi
    echo "ALTER ROLE :\"role\" LOGIN PASSWORD :'password';" |
      psql -v ON_ERROR_STOP=1 -q -v role="$role" -v password="$password"
  done
done
echo "roles ready"
