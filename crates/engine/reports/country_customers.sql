-- title: Country-based customer analysis
-- description: Customers, invoices, revenue and revenue per customer by country.
-- cancellations: excluded.
-- missing customers: their lines count in revenue and invoices, not in customers.
SELECT country,
       COUNT(DISTINCT customer_id) AS customers,
       COUNT(DISTINCT invoice_no) AS invoices,
       ROUND(SUM(line_revenue), 2) AS revenue,
       ROUND(SUM(line_revenue) / NULLIF(COUNT(DISTINCT customer_id), 0), 2) AS revenue_per_customer
FROM orders
WHERE NOT is_cancellation
GROUP BY country
ORDER BY customers DESC, country
