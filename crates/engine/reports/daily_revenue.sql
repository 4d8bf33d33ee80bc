-- title: Daily revenue
-- description: Per day: invoices, sales, cancellations and net revenue.
-- cancellations: counted separately (cancelled is negative) and netted in net_revenue.
-- missing customers: included.
SELECT CAST(invoice_date AS DATE) AS day,
       COUNT(DISTINCT CASE WHEN NOT is_cancellation THEN invoice_no END) AS invoices,
       ROUND(SUM(CASE WHEN NOT is_cancellation THEN line_revenue ELSE 0 END), 2) AS sales,
       ROUND(SUM(CASE WHEN is_cancellation THEN line_revenue ELSE 0 END), 2) AS cancelled,
       ROUND(SUM(line_revenue), 2) AS net_revenue
FROM orders
GROUP BY 1
ORDER BY 1
