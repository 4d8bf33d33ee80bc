#!/usr/bin/env bash
# Real clients against a real `shopstream serve`: psql, psycopg 3 + SQLAlchemy's inspector, pgjdbc,
# node-postgres, the startup statements of Npgsql 4 (Power BI) and Grafana replayed from fixtures, SCRAM
# and TLS logins, and the dashboard in Debian's chromium (playwright-core). Called by .ci/test after the
# cargo tests; needs the debug binary they built.
#
# Data: the first 10 days of the real Online Retail data (../shared/data/online-retail/by-day).
# Installs what it needs when missing: Debian's postgresql-client, libpostgresql-jdbc-java and chromium, a
# Python venv (requirements.txt) and npm packages (package-lock.json here and in ../browser).
# SCREENSHOT_DIR (default target dir/screenshots) receives the browser test's screenshots.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
shared="$root/../shared/data/online-retail/by-day"
target="${CARGO_TARGET_DIR:-$HOME/.cache/shopstream/target}"
bin="${SHOPSTREAM_BIN:-$target/debug/shopstream}"
cache="${SHOPSTREAM_CACHE:-$HOME/.cache/shopstream}"
export SCREENSHOT_DIR="${SCREENSHOT_DIR:-$target/screenshots}"
mkdir -p "$SCREENSHOT_DIR"

need_apt=()
command -v psql >/dev/null || need_apt+=(postgresql-client)
[ -f /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v java >/dev/null || need_apt+=(default-jre-headless)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null
fi
venv="$cache/clients-venv"
if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi
(cd "$here" && [ -d node_modules/pg ] || npm ci --no-audit --no-fund --loglevel=error)
(cd "$here/../browser" && [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error)

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAILED: $*" >&2; exit 1; }

# Starts `serve` with config $1; sets HTTP_URL and PG_PORT.
start_server() {
  local config="$1" out="$work/serve-$RANDOM.out"
  "$bin" --data-dir "$work/data" --config "$config" serve --listen 127.0.0.1:0 --pg-listen 127.0.0.1:0 >"$out" 2>"$out.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q '^postgres:' "$out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^postgres:' "$out" || { cat "$out" "$out.err"; fail "serve did not start"; }
  HTTP_URL="$(grep -o 'http://[0-9.:]*' "$out" | head -1)"
  HTTP_URL="${HTTP_URL%:}"
  PG_PORT="$(sed -n 's/^postgres: [0-9.]*:\([0-9]*\).*/\1/p' "$out")"
}

stop_servers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}

files=("$shared"/*.csv)
"$bin" --data-dir "$work/data" ingest "${files[@]:0:10}" >/dev/null
# The dashboard's Live section reads the default continuous views.
"$bin" --data-dir "$work/data" view defaults >/dev/null

cp "$root/config/default.toml" "$work/open.toml"
start_server "$work/open.toml"
expected="$(curl -fsS "$HTTP_URL/api/sql?format=csv&q=SELECT%20COUNT(*)%20AS%20n%20FROM%20orders" | tail -1)"
[ "$expected" -gt 10000 ] || fail "expected rows from the HTTP API, got $expected"
echo "== $expected order lines; HTTP $HTTP_URL, Postgres port $PG_PORT"

echo "== psql"
export PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER=shopstream PGDATABASE=shopstream PGCONNECT_TIMEOUT=10
q() { psql -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
[ "$(q 'SELECT COUNT(*) FROM orders')" = "$expected" ] || fail "psql count"
q 'SELECT version()' | grep -q '^PostgreSQL 16' || fail "psql version()"
[ "$(q 'SHOW server_version_num')" = "160006" ] || fail "SHOW server_version_num"
[ "$(q "SELECT current_setting('server_version_num')")" = "160006" ] || fail "current_setting"
[ "$(q 'SHOW TimeZone')" = "UTC" ] || fail "SHOW TimeZone"
q 'SET application_name = x' >/dev/null || fail "SET"
q 'BEGIN' >/dev/null && q 'COMMIT' >/dev/null || fail "BEGIN/COMMIT"
psql -X -c '\dt' | grep -q ' orders ' || fail "psql \\dt lists orders"
# information_schema._pg_expandarray (pgjdbc's key and index metadata) on a system index whose keys (9, 8)
# differ from their positions (1, 2).
[ "$(q "SELECT (information_schema._pg_expandarray(i.indkey)).n, information_schema._pg_expandarray(i.indkey) FROM pg_catalog.pg_index i WHERE i.indexrelid = 3455" | tr "\\n" " ")" = "1|9 2|8 " ] \
  || fail "_pg_expandarray"
[ "$(q "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'max_index_keys'")" = "32" ] || fail "pg_settings"
# to_char with PostgreSQL's template patterns (DataFusion's own takes chrono's and echoes these back).
[ "$(q "SELECT to_char(TIMESTAMP '2011-12-09 08:05:00', 'YYYY-MM-DD HH24:MI \"h\" FMDD Mon')")" = "2011-12-09 08:05 h 9 Dec" ] \
  || fail "to_char with a PostgreSQL template"
psql -X -c '\d orders' | grep -q 'invoice_no' || fail "psql \\d orders"
if out="$(psql -X -v ON_ERROR_STOP=1 -c "INSERT INTO orders (invoice_no) VALUES ('X')" 2>&1)"; then
  fail "INSERT was accepted"
fi
echo "$out" | grep -q 'read-only' || fail "INSERT refused without saying read-only: $out"
if out="$(psql -X -v ON_ERROR_STOP=1 -c "EXPLAIN ANALYZE INSERT INTO orders (invoice_no) VALUES ('X')" 2>&1)"; then
  fail "EXPLAIN ANALYZE INSERT was accepted"
fi
echo "$out" | grep -q 'read-only' || fail "EXPLAIN ANALYZE INSERT refused without saying read-only: $out"
[ "$(q 'SELECT COUNT(*) FROM orders')" = "$expected" ] || fail "count changed after refused INSERT"
# A dataset created while the server runs is in its catalog at once: no restart.
printf 'sku,name,price\nP1,Mug,2.55\nP2,Lamp,10.00\n' >"$work/products.csv"
"$bin" --data-dir "$work/data" ingest --dataset products "$work/products.csv" >/dev/null || fail "ingest --dataset"
[ "$(q "SELECT COUNT(*) || ' ' || SUM(price) FROM products")" = "2 12.5500" ] || fail "psql reads a new dataset"
psql -X -c '\dt' | grep -q ' products ' || fail "psql \\dt lists a new dataset"
psql -X -c '\d products' | grep -q 'numeric' || fail "psql \\d products shows its decimal column"
echo "ok: psql"

echo "== psycopg 3 + SQLAlchemy"
"$venv/bin/python" "$here/psycopg_sqlalchemy.py" "postgresql://shopstream@127.0.0.1:$PG_PORT/shopstream" "$expected"

echo "== pgjdbc"
java -cp /usr/share/java/postgresql.jar "$here/PgJdbc.java" \
  "jdbc:postgresql://127.0.0.1:$PG_PORT/shopstream" shopstream "" "$expected"

echo "== node-postgres"
node "$here/node_pg.mjs" "postgresql://shopstream@127.0.0.1:$PG_PORT/shopstream" "$expected"

echo "== Npgsql 4 (Power BI), Grafana, Metabase, DBeaver and pgcli startup statements"
"$venv/bin/python" "$here/replay.py" "postgresql://shopstream@127.0.0.1:$PG_PORT/shopstream" \
  "$here/fixtures/npgsql4.sql" "$here/fixtures/grafana.sql" "$here/fixtures/metabase.sql" \
  "$here/fixtures/dbeaver.sql" "$here/fixtures/pgcli.sql"

echo "== dashboard in chromium"
SHOPSTREAM_URL="$HTTP_URL" LIVE_VIEWS=1 node "$here/../browser/dashboard.test.mjs"
# The Live checks posted an order: count again once the lake has it.
sleep 2
expected="$(curl -fsS "$HTTP_URL/api/sql?format=csv&q=SELECT%20COUNT(*)%20AS%20n%20FROM%20orders" | tail -1)"
stop_servers

echo "== SCRAM and TLS"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$work/server.key" -out "$work/server.crt" 2>/dev/null
sed -e 's/^password = ""/password = "s3cret-pass"/' \
  -e "s|^# tls_cert = .*|tls_cert = \"$work/server.crt\"|" \
  -e "s|^# tls_key = .*|tls_key = \"$work/server.key\"|" "$root/config/default.toml" >"$work/secure.toml"
grep -q 's3cret-pass' "$work/secure.toml" && grep -q "^tls_key" "$work/secure.toml" || fail "secure config"
start_server "$work/secure.toml"
export PGPORT="$PG_PORT"
if PGPASSWORD=wrong psql -X -c 'SELECT 1' >/dev/null 2>"$work/wrong.err"; then fail "a wrong password was accepted"; fi
grep -qi 'password authentication failed' "$work/wrong.err" || fail "wrong password: $(cat "$work/wrong.err")"
if PGPASSWORD= psql -X -w -c 'SELECT 1' >/dev/null 2>&1; then fail "no password was accepted"; fi
[ "$(PGPASSWORD=s3cret-pass PGSSLMODE=require q 'SELECT COUNT(*) FROM orders')" = "$expected" ] || fail "SCRAM over TLS"
"$venv/bin/python" - "$PG_PORT" <<'EOF' || fail "psycopg over TLS with SCRAM"
import sys, psycopg
with psycopg.connect(host="127.0.0.1", port=sys.argv[1], user="shopstream", password="s3cret-pass",
                     dbname="shopstream", sslmode="require") as c:
    assert c.pgconn.ssl_in_use, "TLS not in use"
    assert c.execute("SELECT 1").fetchone()[0] == 1
print("ok: psycopg over TLS with SCRAM-SHA-256")
EOF
echo "ok: SCRAM-SHA-256 (wrong and missing passwords refused), TLS with sslmode=require"
stop_servers
echo "all client checks passed"
