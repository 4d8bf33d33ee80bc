-- title: Unit price per customer
-- description: Average, lowest and highest unit price each customer paid, over their purchase lines.
-- cancellations: excluded (cancellation lines repeat prices of earlier purchases); lines with zero or negative prices excluded.
-- missing customers: excluded (no customer to attribute the lines to).
SELECT customer_id,
       COUNT(*) AS lines,
       ROUND(AVG(unit_price), 2) AS avg_unit_price,
       MIN(unit_price) AS min_unit_price,
       MAX(unit_price) AS max_unit_price
FROM orders
WHERE NOT is_cancellation AND unit_price > 0 AND customer_id IS NOT NULL
GROUP BY customer_id
ORDER BY customer_id
