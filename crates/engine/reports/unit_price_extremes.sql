-- title: Highest and lowest unit price customers
-- description: The n customers with the highest and the n with the lowest average unit price.
-- cancellations: excluded; zero and negative prices excluded.
-- missing customers: excluded.
-- param n: int = 5
WITH per_customer AS (
  SELECT customer_id, ROUND(AVG(unit_price), 2) AS avg_unit_price, COUNT(*) AS lines
  FROM orders
  WHERE NOT is_cancellation AND unit_price > 0 AND customer_id IS NOT NULL
  GROUP BY customer_id
),
highest AS (SELECT 'highest' AS rank_group, * FROM per_customer ORDER BY avg_unit_price DESC, customer_id LIMIT {{n}}),
lowest AS (SELECT 'lowest' AS rank_group, * FROM per_customer ORDER BY avg_unit_price ASC, customer_id LIMIT {{n}})
SELECT * FROM (SELECT * FROM highest UNION ALL SELECT * FROM lowest) t
ORDER BY rank_group, CASE WHEN rank_group = 'highest' THEN -avg_unit_price ELSE avg_unit_price END, customer_id
