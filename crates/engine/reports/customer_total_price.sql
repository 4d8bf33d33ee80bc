-- title: Customer-wise total price
-- description: What each customer bought, what they cancelled, and the net.
-- cancellations: shown separately (cancelled is negative) and netted in net_total.
-- missing customers: excluded.
SELECT customer_id,
       COUNT(DISTINCT invoice_no) AS invoices,
       ROUND(SUM(CASE WHEN NOT is_cancellation THEN line_revenue ELSE 0 END), 2) AS total_price,
       ROUND(SUM(CASE WHEN is_cancellation THEN line_revenue ELSE 0 END), 2) AS cancelled,
       ROUND(SUM(line_revenue), 2) AS net_total
FROM orders
WHERE customer_id IS NOT NULL
GROUP BY customer_id
ORDER BY net_total DESC, customer_id
