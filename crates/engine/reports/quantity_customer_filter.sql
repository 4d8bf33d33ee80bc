-- title: Quantity and customer filtering
-- description: Purchase lines of at least min_quantity units, for one customer (customer_id) or all (customer_id = 0).
-- cancellations: excluded.
-- missing customers: included when customer_id = 0.
-- param min_quantity: int = 100
-- param customer_id: int = 0
SELECT invoice_no, invoice_date, customer_id, stock_code, description, quantity, unit_price,
       ROUND(line_revenue, 2) AS revenue
FROM orders
WHERE NOT is_cancellation
  AND quantity >= {{min_quantity}}
  AND ({{customer_id}} = 0 OR customer_id = {{customer_id}})
ORDER BY quantity DESC, invoice_no, stock_code, source_line
