-- title: RFM per customer
-- description: Recency (days before the day after the last invoice in the data), frequency (invoices) and monetary value (sales) per customer, each scored 1-5 by quintile (5 best), with a segment.
-- cancellations: excluded from frequency and monetary value.
-- missing customers: excluded.
WITH sales AS (
  SELECT * FROM orders WHERE NOT is_cancellation AND customer_id IS NOT NULL
),
as_of AS (SELECT FLOOR(EXTRACT(EPOCH FROM MAX(invoice_date)) / 86400) + 1 AS d FROM sales),
per_customer AS (
  SELECT customer_id,
         CAST((SELECT d FROM as_of) - FLOOR(EXTRACT(EPOCH FROM MAX(invoice_date)) / 86400) AS BIGINT) AS recency_days,
         COUNT(DISTINCT invoice_no) AS frequency,
         ROUND(SUM(line_revenue), 2) AS monetary
  FROM sales
  GROUP BY customer_id
),
scored AS (
  SELECT *,
         NTILE(5) OVER (ORDER BY recency_days DESC, customer_id) AS r,
         NTILE(5) OVER (ORDER BY frequency, customer_id) AS f,
         NTILE(5) OVER (ORDER BY monetary, customer_id) AS m
  FROM per_customer
)
SELECT customer_id, recency_days, frequency, monetary, r, f, m,
       CASE
         WHEN r >= 4 AND f >= 4 AND m >= 4 THEN 'champions'
         WHEN r >= 3 AND f >= 3 THEN 'loyal'
         WHEN r >= 4 THEN 'recent'
         WHEN r <= 2 AND f >= 3 THEN 'at risk'
         ELSE 'hibernating'
       END AS segment
FROM scored
ORDER BY customer_id
