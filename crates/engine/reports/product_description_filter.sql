-- title: Products by description word
-- description: Products whose description contains a word (whole word, any case), with lines, units and revenue.
-- cancellations: excluded.
-- missing customers: included (product sales do not need a customer).
-- param word: text = HEART
SELECT stock_code,
       MIN(description) AS description,
       COUNT(*) AS lines,
       SUM(quantity) AS units,
       ROUND(SUM(line_revenue), 2) AS revenue
FROM orders
WHERE NOT is_cancellation
  AND (' ' || UPPER(description) || ' ') LIKE ('% ' || UPPER({{word}}) || ' %')
GROUP BY stock_code
ORDER BY revenue DESC, stock_code
