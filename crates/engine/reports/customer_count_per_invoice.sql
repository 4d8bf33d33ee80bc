-- title: Customer count per invoice
-- description: Distinct customers, lines and units per invoice, largest invoices first (n of them).
-- cancellations: excluded.
-- missing customers: invoices without a customer have customers = 0.
-- param n: int = 20
SELECT invoice_no,
       COUNT(DISTINCT customer_id) AS customers,
       COUNT(*) AS lines,
       SUM(quantity) AS units
FROM orders
WHERE NOT is_cancellation
GROUP BY invoice_no
ORDER BY lines DESC, invoice_no
LIMIT {{n}}
