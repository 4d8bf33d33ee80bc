-- title: Top countries by quantity
-- description: The n countries with the most units sold.
-- cancellations: excluded (their negative quantities would net off returns, not sales).
-- missing customers: included.
-- param n: int = 5
SELECT country, SUM(quantity) AS units, COUNT(*) AS lines
FROM orders
WHERE NOT is_cancellation
GROUP BY country
ORDER BY units DESC, country
LIMIT {{n}}
