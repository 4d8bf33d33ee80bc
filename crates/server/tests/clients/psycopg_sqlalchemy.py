"""psycopg 3 and SQLAlchemy's inspector (Superset's layer) against shopstream's Postgres endpoint.

Usage: python psycopg_sqlalchemy.py DSN EXPECTED_ORDERS
Checks the count of `orders` equals EXPECTED_ORDERS (what the HTTP API answered), that the inspector
lists the lake's tables (and information_schema their columns with types), that version and settings read as PostgreSQL 16,
that a server-side parameter binds, and that writes are refused. Exits non-zero on the first failure.
"""

import decimal
import sys

import psycopg
import sqlalchemy as sa

dsn, expected = sys.argv[1], int(sys.argv[2])


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


with psycopg.connect(dsn) as conn:
    # psycopg 3 sends every execute() over the extended protocol (Parse/Bind/Execute).
    n = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    check(n == expected, f"psycopg count(orders) = {n}, expected {expected}")
    v = conn.execute("SELECT version()").fetchone()[0]
    check(v.startswith("PostgreSQL 16"), f"version() reads as PostgreSQL: {v!r}")
    check(conn.info.server_version >= 160000, f"server_version from startup: {conn.info.server_version}")
    num = conn.execute("SELECT current_setting('server_version_num')").fetchone()[0]
    check(num == "160006", f"current_setting('server_version_num') = {num}")
    row = conn.execute(
        "SELECT COUNT(*), ROUND(SUM(line_revenue), 2) FROM orders WHERE country = %s AND NOT is_cancellation",
        ("France",),
    ).fetchone()
    check(row[0] > 0, f"bound parameter: {row[0]} French lines, revenue {row[1]}")
    check(isinstance(row[1], decimal.Decimal), f"money is NUMERIC, read as Decimal: {row[1]!r}")
    # A parameter inside a select-list subquery must not shift the ones after it (SQLAlchemy's column
    # query binds a string there, then a smallint).
    row = conn.execute("SELECT (SELECT %s::VARCHAR) AS x, %s::SMALLINT + 1 AS y", ["a", 41]).fetchone()
    check(row[1] == 42, f"parameter after a subquery's parameter: {row[1]}")
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("BEGIN")
    conn.execute("COMMIT")
    try:
        conn.execute("INSERT INTO orders (invoice_no) VALUES ('X1')")
        check(False, "INSERT must be refused")
    except psycopg.Error as e:
        check(e.sqlstate == "25006", f"INSERT refused with 25006 read-only: {e.sqlstate} {str(e).strip()}")

url = "postgresql+psycopg://" + dsn.split("://", 1)[1]
engine = sa.create_engine(url)
insp = sa.inspect(engine)
tables = set(insp.get_table_names(schema="public"))
check({"orders", "raw_orders", "dead_letters", "loads"} <= tables, f"inspector tables: {sorted(tables)}")
check(insp.has_table("orders", schema="public"), "inspector has_table(orders)")
check(insp.get_view_names(schema="public") == [], "no views")
check(insp.get_foreign_keys("orders", schema="public") == [], "no foreign keys")
# What Superset reads when a table is added as a dataset: columns with types, keys, indexes.
columns = {c["name"]: c for c in insp.get_columns("orders", schema="public")}
check(
    isinstance(columns.get("quantity", {}).get("type"), sa.BigInteger),
    f"get_columns: orders.quantity {columns.get('quantity')}",
)
check(
    isinstance(columns.get("invoice_date", {}).get("type"), sa.TIMESTAMP),
    f"get_columns: orders.invoice_date {columns.get('invoice_date')}",
)
check(
    # NUMERIC (money is decimal(18,4)); the catalog's format_type gives no typmod, so no precision here.
    isinstance(columns.get("unit_price", {}).get("type"), sa.Numeric)
    and not isinstance(columns["unit_price"]["type"], sa.Float),
    f"get_columns: orders.unit_price {columns.get('unit_price')}",
)
check(columns["invoice_no"]["nullable"] is False, f"get_columns: invoice_no not null {columns['invoice_no']}")
check(columns["customer_id"]["nullable"] is True, f"get_columns: customer_id nullable {columns['customer_id']}")
check(len(columns) >= 10, f"get_columns: {len(columns)} columns")
check(
    insp.get_pk_constraint("orders", schema="public")["constrained_columns"] == [],
    "get_pk_constraint: no primary key",
)
check(insp.get_indexes("orders", schema="public") == [], "get_indexes: no indexes")
check(insp.get_unique_constraints("orders", schema="public") == [], "get_unique_constraints: none")
# Superset's generic SQL path reads column types from information_schema:
with engine.connect() as c:
    cols = dict(
        c.execute(
            sa.text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = :t"
            ),
            {"t": "orders"},
        ).all()
    )
check(cols.get("quantity") == "bigint", f"information_schema: orders.quantity {cols.get('quantity')}")
check(cols.get("invoice_date", "").startswith("timestamp"), f"orders.invoice_date {cols.get('invoice_date')}")
check(len(cols) >= 10, f"{len(cols)} columns of orders")
schemas = insp.get_schema_names()
check("public" in schemas, f"schemas: {schemas}")
with engine.connect() as c:
    n = c.execute(sa.text("SELECT COUNT(*) FROM orders")).scalar_one()
    check(n == expected, f"SQLAlchemy count = {n}")
print("psycopg + SQLAlchemy: all checks passed")
