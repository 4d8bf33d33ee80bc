-- title: High-value transactions
-- description: Invoices whose total is at least min_total.
-- cancellations: excluded (a cancellation is not a sale).
-- missing customers: included (customer_id is empty).
-- param min_total: float = 1000
SELECT invoice_no,
       MIN(customer_id) AS customer_id,
       MIN(country) AS country,
       MIN(invoice_date) AS invoice_date,
       COUNT(*) AS lines,
       ROUND(SUM(line_revenue), 2) AS total
FROM orders
WHERE NOT is_cancellation
GROUP BY invoice_no
HAVING SUM(line_revenue) >= {{min_total}}
ORDER BY total DESC, invoice_no
