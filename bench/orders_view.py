"""The `orders` table of shopstream, defined for DuckDB and Spark over raw Online Retail CSV or Parquet:
the same cleaning (trimmed text, empty -> NULL, integer customer ids, C-invoice cancellations, line revenue) and
the same types (money as DECIMAL(18,4), line revenue its exact product with the quantity)."""

DUCKDB = """
CREATE OR REPLACE VIEW orders AS
SELECT CAST(InvoiceNo AS VARCHAR) AS invoice_no,
       CAST(StockCode AS VARCHAR) AS stock_code,
       NULLIF(TRIM(Description), '') AS description,
       CAST(Quantity AS BIGINT) AS quantity,
       CAST(InvoiceDate AS TIMESTAMP) AS invoice_date,
       CAST(UnitPrice AS DECIMAL(18,4)) AS unit_price,
       CAST(CustomerID AS BIGINT) AS customer_id,
       NULLIF(TRIM(Country), '') AS country,
       upper(substr(CAST(InvoiceNo AS VARCHAR), 1, 1)) = 'C' AS is_cancellation,
       CAST(CAST(Quantity AS BIGINT) * CAST(UnitPrice AS DECIMAL(18,4)) AS DECIMAL(18,4)) AS line_revenue,
       strftime(CAST(InvoiceDate AS TIMESTAMP), '%Y-%m') AS invoice_month,
       0 AS source_line
FROM {source}
"""

SPARK = """
CREATE OR REPLACE TEMP VIEW orders AS
SELECT CAST(InvoiceNo AS STRING) AS invoice_no,
       CAST(StockCode AS STRING) AS stock_code,
       NULLIF(TRIM(Description), '') AS description,
       CAST(Quantity AS BIGINT) AS quantity,
       CAST(InvoiceDate AS TIMESTAMP) AS invoice_date,
       CAST(UnitPrice AS DECIMAL(18,4)) AS unit_price,
       CAST(CAST(CustomerID AS DOUBLE) AS BIGINT) AS customer_id,
       NULLIF(TRIM(Country), '') AS country,
       upper(substr(CAST(InvoiceNo AS STRING), 1, 1)) = 'C' AS is_cancellation,
       CAST(CAST(Quantity AS BIGINT) * CAST(UnitPrice AS DECIMAL(18,4)) AS DECIMAL(18,4)) AS line_revenue,
       date_format(CAST(InvoiceDate AS TIMESTAMP), 'yyyy-MM') AS invoice_month,
       0 AS source_line
FROM raw
"""


def load_reports(folder, dialect="duckdb"):
    """name -> (sql with defaults substituted) for every report file; `dialect="spark"` rewrites
    what Spark SQL spells differently (it has no EXTRACT(EPOCH ...))."""
    import os, re
    out = {}
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".sql"):
            continue
        text = open(os.path.join(folder, f)).read()
        for m in re.finditer(r"^-- param (\w+): (\w+) = (.*)$", text, re.M):
            name, kind, default = m.group(1), m.group(2), m.group(3).strip()
            lit = f"'{default}'" if kind == "text" else default
            text = text.replace("{{" + name + "}}", lit)
        if dialect == "spark":
            text = re.sub(r"EXTRACT\(EPOCH FROM ", "UNIX_SECONDS(", text)
        out[f[:-4]] = text
    return out
