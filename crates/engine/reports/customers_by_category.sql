-- title: Customers by product category
-- description: The data has no category column; the category is the last word of the description (BAG, LANTERN, MUG, …). Customers, lines, units and revenue per category.
-- cancellations: excluded.
-- missing customers: lines count towards units and revenue; only identified customers are counted as customers.
-- param n: int = 20
SELECT REVERSE(SPLIT_PART(REVERSE(description), ' ', 1)) AS category,
       COUNT(DISTINCT customer_id) AS customers,
       COUNT(*) AS lines,
       SUM(quantity) AS units,
       ROUND(SUM(line_revenue), 2) AS revenue
FROM orders
WHERE NOT is_cancellation AND description IS NOT NULL
GROUP BY 1
ORDER BY customers DESC, category
LIMIT {{n}}
