-- title: Average quantity per country
-- description: Average units per purchase line, and lines, by country.
-- cancellations: excluded.
-- missing customers: included.
SELECT country, ROUND(AVG(quantity), 2) AS avg_quantity, COUNT(*) AS lines
FROM orders
WHERE NOT is_cancellation
GROUP BY country
ORDER BY avg_quantity DESC, country
