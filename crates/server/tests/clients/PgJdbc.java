// pgjdbc (Debian's libpostgresql-jdbc-java: what Metabase, DBeaver and Tableau use) against shopstream's
// Postgres endpoint. Run: java -cp /usr/share/java/postgresql.jar PgJdbc.java JDBC_URL USER PASSWORD EXPECTED
// Checks the driver connects, DatabaseMetaData lists the lake's tables and the columns of `orders` with
// their types (the navigator of every JDBC tool), a prepared statement with a parameter runs, the count
// equals EXPECTED, and writes are refused. Exits non-zero on the first failure.
import java.sql.*;
import java.util.*;

public class PgJdbc {
    static void check(boolean ok, String what) {
        if (!ok) { System.out.println("FAILED: " + what); System.exit(1); }
        System.out.println("ok: " + what);
    }

    static int count(ResultSet rs) throws SQLException {
        int n = 0;
        try (rs) {
            while (rs.next()) n++;
        }
        return n;
    }

    public static void main(String[] args) throws Exception {
        String url = args[0];
        long expected = Long.parseLong(args[3]);
        try (Connection c = DriverManager.getConnection(url, args[1], args[2])) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseMajorVersion() == 16, "server major version " + md.getDatabaseProductVersion());
            Set<String> tables = new TreeSet<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            check(tables.containsAll(List.of("orders", "raw_orders", "dead_letters", "loads")), "getTables: " + tables);
            Map<String, String> cols = new LinkedHashMap<>();
            try (ResultSet rs = md.getColumns(null, "public", "orders", "%")) {
                while (rs.next()) cols.put(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"));
            }
            check(cols.size() >= 10, "getColumns(orders): " + cols);
            check("int8".equals(cols.get("quantity")), "quantity is int8: " + cols.get("quantity"));
            // What Metabase's sync and DBeaver's navigator ask next: keys, indexes, types. The lake's
            // tables have no keys or indexes.
            check(count(md.getPrimaryKeys(null, "public", "orders")) == 0, "getPrimaryKeys(orders): none");
            check(count(md.getImportedKeys(null, "public", "orders")) == 0, "getImportedKeys(orders): none");
            check(count(md.getExportedKeys(null, "public", "orders")) == 0, "getExportedKeys(orders): none");
            check(count(md.getIndexInfo(null, "public", "orders", false, true)) == 0, "getIndexInfo(orders): none");
            check(count(md.getBestRowIdentifier(null, "public", "orders", DatabaseMetaData.bestRowSession, true)) == 0,
                "getBestRowIdentifier(orders): none");
            Set<String> types = new TreeSet<>();
            try (ResultSet rs = md.getTypeInfo()) {
                while (rs.next()) types.add(rs.getString("TYPE_NAME"));
            }
            check(types.containsAll(List.of("int8", "text", "float8", "timestamp", "bool")), "getTypeInfo: " + types.size() + " types");
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT COUNT(*) FROM orders")) {
                rs.next();
                check(rs.getLong(1) == expected, "count(orders) = " + rs.getLong(1) + ", expected " + expected);
            }
            try (PreparedStatement p = c.prepareStatement(
                    "SELECT invoice_no, invoice_date, line_revenue FROM orders WHERE country = ? ORDER BY invoice_date, invoice_no LIMIT 5")) {
                p.setString(1, "France");
                int rows = 0;
                try (ResultSet rs = p.executeQuery()) {
                    while (rs.next()) {
                        rows++;
                        rs.getTimestamp(2);
                        rs.getDouble(3);
                    }
                }
                check(rows == 5, "prepared statement with a parameter: " + rows + " rows");
            }
            try (Statement s = c.createStatement()) {
                s.executeUpdate("DELETE FROM orders");
                check(false, "DELETE must be refused");
            } catch (SQLException e) {
                check("25006".equals(e.getSQLState()), "DELETE refused: " + e.getSQLState() + " " + e.getMessage());
            }
        }
        System.out.println("pgjdbc: all checks passed");
    }
}
