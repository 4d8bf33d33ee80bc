-- title: Top products by revenue
-- description: The n products with the most sales revenue (a product's description is its alphabetically first one).
-- cancellations: excluded.
-- missing customers: included.
-- param n: int = 10
SELECT stock_code,
       MIN(description) AS description,
       SUM(quantity) AS units,
       ROUND(SUM(line_revenue), 2) AS revenue
FROM orders
WHERE NOT is_cancellation
GROUP BY stock_code
ORDER BY revenue DESC, stock_code
LIMIT {{n}}
