// node-postgres against shopstream's Postgres endpoint.
// Usage: node node_pg.mjs CONNECTION_STRING EXPECTED_ORDERS
// Checks a plain query (simple protocol), a parameterized one (extended protocol), types as JS values,
// the count equal to EXPECTED_ORDERS, and that writes are refused. Exits non-zero on the first failure.
import pg from 'pg';

const [conn, expected] = process.argv.slice(2);
const check = (ok, what) => {
  if (!ok) { console.log(`FAILED: ${what}`); process.exit(1); }
  console.log(`ok: ${what}`);
};

const client = new pg.Client({ connectionString: conn });
await client.connect();
const plain = await client.query('SELECT COUNT(*) AS n FROM orders');
check(Number(plain.rows[0].n) === Number(expected), `count(orders) = ${plain.rows[0].n}, expected ${expected}`);
const params = await client.query(
  'SELECT invoice_no, invoice_date, quantity, line_revenue, is_cancellation FROM orders WHERE country = $1 ORDER BY invoice_date, invoice_no LIMIT 3',
  ['France'],
);
check(params.rows.length === 3, `parameterized query: ${params.rows.length} rows`);
const r = params.rows[0];
check(r.invoice_date instanceof Date, `invoice_date is a Date: ${r.invoice_date}`);
check(typeof r.is_cancellation === 'boolean', `is_cancellation is a boolean: ${r.is_cancellation}`);
// NUMERIC arrives as text (node-postgres keeps its digits): money is decimal(18,4).
check(/^-?\d+\.\d{4}$/.test(r.line_revenue), `line_revenue is a numeric with 4 decimals: ${r.line_revenue}`);
const v = await client.query('SHOW server_version');
check(v.rows[0].server_version.startsWith('16'), `SHOW server_version = ${v.rows[0].server_version}`);
try {
  await client.query('DROP TABLE orders');
  check(false, 'DROP must be refused');
} catch (e) {
  check(e.code === '25006', `DROP refused: ${e.code} ${e.message}`);
}
await client.end();
console.log('node-postgres: all checks passed');
