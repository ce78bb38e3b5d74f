// pgjdbc against Freshet, as Metabase and DBeaver use it.
//
// Build and run (no build tool; Debian's pgjdbc 42.5.x and a JDK 17):
//   javac -cp /usr/share/java/postgresql.jar -d /tmp/jdbc-classes FreshetJdbc.java
//   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=freshet PGDATABASE=freshet \
//     java -cp /usr/share/java/postgresql.jar:/tmp/jdbc-classes FreshetJdbc
//
// Each check runs on its own connection, so one failure does not hide the others. Every
// failure is printed as "FAIL <check>: <reason>"; the program exits 1 if any check failed and
// prints "pgjdbc: ok" (exit 0) when all passed. The expected values are what PostgreSQL 15
// returns for the same calls.
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class FreshetJdbc {
    static String url;
    static final Properties props = new Properties();
    static final List<String> failures = new ArrayList<>();
    static final int BIG_ROWS = 5000;

    interface Check { void run(Connection c) throws Exception; }

    public static void main(String[] args) throws Exception {
        String host = env("PGHOST", "127.0.0.1"), port = env("PGPORT", "5432");
        url = "jdbc:postgresql://" + host + ":" + port + "/" + env("PGDATABASE", "freshet");
        props.setProperty("user", env("PGUSER", "freshet"));
        if (System.getenv("PGPASSWORD") != null) props.setProperty("password", System.getenv("PGPASSWORD"));
        props.setProperty("sslmode", "disable");
        props.setProperty("ApplicationName", "FreshetJdbc");
        try (Connection c = DriverManager.getConnection(url, props)) { setup(c); }

        check("product name and version", FreshetJdbc::product);
        check("getSQLKeywords (pg_get_keywords())", c -> ok(!c.getMetaData().getSQLKeywords().isEmpty(), "no keywords"));
        check("getSchemas", FreshetJdbc::schemas);
        check("getTables", FreshetJdbc::tables);
        check("getColumns", FreshetJdbc::columns);
        check("getPrimaryKeys", FreshetJdbc::primaryKeys);
        check("getIndexInfo", FreshetJdbc::indexInfo);
        check("getTypeInfo", c -> ok(count(c.getMetaData().getTypeInfo(), "TYPE_NAME",
                Set.of("int4", "int8", "varchar", "text", "timestamp", "float8", "bool")) == 7, "getTypeInfo lacks a basic type"));
        check("getImportedKeys/getExportedKeys", c -> {
            eq(0, rows(c.getMetaData().getImportedKeys(null, "public", "jdbc_items")).size(), "imported keys");
            eq(0, rows(c.getMetaData().getExportedKeys(null, "public", "jdbc_items")).size(), "exported keys");
        });
        check("getFunctions", c -> ok(!rows(c.getMetaData().getFunctions(null, "pg_catalog", "lower")).isEmpty(),
                "getFunctions(null, pg_catalog, lower) is empty (PostgreSQL lists lower(text) etc. from pg_proc)"));
        check("ResultSetMetaData: names, types, rows", c -> resultSetMetaData(c, false));
        check("ResultSetMetaData: isNullable, getTableName (RowDescription table OID/attnum)", c -> resultSetMetaData(c, true));
        check("materialized view rows", c -> eq(List.of("apple|2|1.25", "pear|1|0.5"), strings(c.createStatement().executeQuery(
                "SELECT name, n, total FROM jdbc_item_totals WHERE name IN ('apple', 'pear') ORDER BY name")), "jdbc_item_totals"));
        check("prepared SELECT past prepareThreshold (S_n, binary results)", c -> prepared(c, false));
        check("prepared INSERT past prepareThreshold (Describe Statement -> NoData)", c -> prepared(c, true));
        check("typed parameters round-trip (binary after threshold)", FreshetJdbc::typedParams);
        check("setDate (pgjdbc sends the date with the JVM's offset, '2024-03-10 +00')", c -> {
            PreparedStatement ps = c.prepareStatement("SELECT ?::date::text, ? = DATE '2024-03-10'");
            ps.setDate(1, java.sql.Date.valueOf("2024-03-10"));
            ps.setDate(2, java.sql.Date.valueOf("2024-03-10"));
            ResultSet rs = ps.executeQuery();
            ok(rs.next(), "one row");
            eq("2024-03-10", rs.getString(1), "the date");
            ok(rs.getBoolean(2), "compared with a date");
        });
        check("fetchSize in a transaction (portals)", FreshetJdbc::fetchSize);
        check("commit and rollback", FreshetJdbc::commitRollback);
        check("error in a transaction, rollback, continue", FreshetJdbc::errorInTransaction);
        check("transaction isolation (SET SESSION CHARACTERISTICS / SHOW)", c -> {
            c.setTransactionIsolation(Connection.TRANSACTION_READ_UNCOMMITTED); // Metabase
            eq(Connection.TRANSACTION_READ_UNCOMMITTED, c.getTransactionIsolation(), "SHOW TRANSACTION ISOLATION LEVEL");
        });
        check("read-only transaction and search_path", FreshetJdbc::sessionSettings);
        check("a schema: getSchemas, getTables, getColumns, getPrimaryKeys, ResultSetMetaData", FreshetJdbc::schemaObjects);
        check("currentSchema other than public: statements refused, not run against public", FreshetJdbc::currentSchema);

        if (!failures.isEmpty()) {
            System.out.println("\npgjdbc: " + failures.size() + " check(s) failed:");
            failures.forEach(f -> System.out.println("  - " + f));
            System.exit(1);
        }
        System.out.println("pgjdbc: ok");
    }

    static void setup(Connection c) throws SQLException {
        Statement st = c.createStatement();
        st.execute("DROP SCHEMA IF EXISTS jdbc_s CASCADE");
        st.execute("CREATE SCHEMA jdbc_s");
        // Same name as a public table: the catalogs must tell them apart.
        st.execute("CREATE TABLE jdbc_s.jdbc_items (sku TEXT PRIMARY KEY, qty INT)");
        st.execute("INSERT INTO jdbc_s.jdbc_items VALUES ('a-1', 4), ('b-2', NULL)");
        st.execute("CREATE MATERIALIZED VIEW jdbc_s.stock AS SELECT count(*) AS n FROM jdbc_s.jdbc_items");
        st.execute("DROP MATERIALIZED VIEW IF EXISTS jdbc_item_totals");
        st.execute("DROP TABLE IF EXISTS jdbc_items");
        st.execute("DROP TABLE IF EXISTS jdbc_big");
        st.execute("CREATE TABLE jdbc_items (id INT PRIMARY KEY, name VARCHAR NOT NULL, ts TIMESTAMP, price DOUBLE PRECISION)");
        st.execute("INSERT INTO jdbc_items VALUES (1, 'apple', '2024-03-01 10:00:00', 1.25),"
                + " (2, 'pear', '2024-03-01 10:00:30.5', 0.5), (3, 'apple', '2024-03-01 10:01:00', NULL)");
        st.execute("CREATE MATERIALIZED VIEW jdbc_item_totals AS SELECT name, count(*) AS n, sum(price) AS total FROM jdbc_items GROUP BY name");
        st.execute("CREATE TABLE jdbc_big (id INT PRIMARY KEY, label TEXT NOT NULL)");
        // A JDBC batch: several Parse/Bind/Execute per Sync.
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_big (id, label) VALUES (?, ?)")) {
            for (int i = 1; i <= BIG_ROWS; i++) { ps.setInt(1, i); ps.setString(2, "row " + i); ps.addBatch(); }
            ps.executeBatch();
        }
    }

    static void product(Connection c) throws Exception {
        DatabaseMetaData md = c.getMetaData();
        eq("PostgreSQL", md.getDatabaseProductName(), "getDatabaseProductName");
        ok(md.getDatabaseMajorVersion() >= 10, "getDatabaseMajorVersion " + md.getDatabaseMajorVersion());
        ok(md.getDatabaseProductVersion().matches("\\d+\\.\\d+.*"), "getDatabaseProductVersion " + md.getDatabaseProductVersion());
        eq("\"", md.getIdentifierQuoteString(), "getIdentifierQuoteString");
        ok(c.isValid(5), "isValid (empty query)");
        ResultSet rs = c.createStatement().executeQuery("SELECT 1");
        rs.next();
        eq(Integer.class, rs.getObject(1).getClass(), "SELECT 1 is int4 (Metabase checks (= result 1))");
    }

    static void schemas(Connection c) throws Exception {
        Set<String> names = new HashSet<>(column(c.getMetaData().getSchemas(), "TABLE_SCHEM"));
        for (String s : List.of("public", "pg_catalog", "information_schema", "freshet_catalog"))
            ok(names.contains(s), "getSchemas lacks " + s + " (has " + names + ")");
    }

    static void tables(Connection c) throws Exception {
        DatabaseMetaData md = c.getMetaData();
        Map<String, String> kinds = new TreeMap<>();
        for (Map<String, Object> r : rows(md.getTables(null, "public", "jdbc_%", null)))
            kinds.put((String) r.get("TABLE_NAME"), (String) r.get("TABLE_TYPE"));
        // PostgreSQL with types == null also lists the primary-key index.
        eq("TABLE", kinds.get("jdbc_items"), "TABLE_TYPE of jdbc_items " + kinds);
        eq("TABLE", kinds.get("jdbc_big"), "TABLE_TYPE of jdbc_big");
        eq("MATERIALIZED VIEW", kinds.get("jdbc_item_totals"), "TABLE_TYPE of jdbc_item_totals");
        eq("INDEX", kinds.get("jdbc_items_pkey"), "TABLE_TYPE of jdbc_items_pkey");
        // What DBeaver and Metabase's table listings ask for.
        List<String> listed = column(md.getTables(null, "public", "jdbc_%", new String[] {"TABLE", "VIEW", "MATERIALIZED VIEW"}), "TABLE_NAME");
        eq(List.of("jdbc_item_totals", "jdbc_big", "jdbc_items"), listed, "getTables(TABLE, VIEW, MATERIALIZED VIEW), ordered by type then name");
    }

    static void columns(Connection c) throws Exception {
        DatabaseMetaData md = c.getMetaData();
        List<String> got = new ArrayList<>();
        for (Map<String, Object> r : rows(md.getColumns(null, "public", "jdbc_items", "%")))
            got.add(r.get("ORDINAL_POSITION") + " " + r.get("COLUMN_NAME") + " " + r.get("TYPE_NAME") + " " + r.get("DATA_TYPE")
                    + " size=" + r.get("COLUMN_SIZE") + " nullable=" + r.get("NULLABLE") + " " + r.get("IS_NULLABLE") + " auto=" + r.get("IS_AUTOINCREMENT"));
        eq(List.of("1 id int4 " + Types.INTEGER + " size=10 nullable=0 NO auto=NO",
                   "2 name varchar " + Types.VARCHAR + " size=2147483647 nullable=0 NO auto=NO",
                   "3 ts timestamp " + Types.TIMESTAMP + " size=29 nullable=1 YES auto=NO",
                   "4 price float8 " + Types.DOUBLE + " size=17 nullable=1 YES auto=NO"), got, "getColumns(jdbc_items)");
        got.clear();
        for (Map<String, Object> r : rows(md.getColumns(null, "public", "jdbc_item_totals", "%")))
            got.add(r.get("ORDINAL_POSITION") + " " + r.get("COLUMN_NAME") + " " + r.get("TYPE_NAME"));
        eq(List.of("1 name varchar", "2 n int8", "3 total float8"), got, "getColumns(jdbc_item_totals)");
        got.clear();
        for (Map<String, Object> r : rows(md.getColumns(null, "public", "jdbc_big", "%")))
            got.add(r.get("ORDINAL_POSITION") + " " + r.get("COLUMN_NAME") + " " + r.get("TYPE_NAME") + " " + r.get("DATA_TYPE"));
        eq(List.of("1 id int4 " + Types.INTEGER, "2 label text " + Types.VARCHAR), got, "getColumns(jdbc_big): a TEXT column is text");
    }

    static void primaryKeys(Connection c) throws Exception {
        List<Map<String, Object>> pk = rows(c.getMetaData().getPrimaryKeys(null, "public", "jdbc_items"));
        eq(1, pk.size(), "primary key columns " + pk);
        eq("id", pk.get(0).get("COLUMN_NAME"), "COLUMN_NAME");
        eq(1, ((Number) pk.get(0).get("KEY_SEQ")).intValue(), "KEY_SEQ");
        eq("jdbc_items_pkey", pk.get(0).get("PK_NAME"), "PK_NAME");
    }

    static void indexInfo(Connection c) throws Exception {
        for (boolean unique : new boolean[] {false, true}) {
            List<Map<String, Object>> ix = rows(c.getMetaData().getIndexInfo(null, "public", "jdbc_items", unique, true));
            eq(1, ix.size(), "getIndexInfo(unique=" + unique + ") rows " + ix);
            Map<String, Object> r = ix.get(0);
            eq("jdbc_items_pkey", r.get("INDEX_NAME"), "INDEX_NAME");
            eq(false, r.get("NON_UNIQUE"), "NON_UNIQUE");
            eq("id", r.get("COLUMN_NAME"), "COLUMN_NAME (pg_get_indexdef(oid, 1, false))");
            eq(1, ((Number) r.get("ORDINAL_POSITION")).intValue(), "ORDINAL_POSITION");
            eq("A", r.get("ASC_OR_DESC"), "ASC_OR_DESC");
        }
    }

    static void resultSetMetaData(Connection c, boolean origin) throws Exception {
        ResultSet rs = c.createStatement().executeQuery(
                "SELECT id, name, ts, price, id + 1 AS next_id FROM jdbc_items WHERE id < 100 ORDER BY id");
        ResultSetMetaData m = rs.getMetaData();
        eq(5, m.getColumnCount(), "column count");
        String[] names = {"id", "name", "ts", "price", "next_id"};
        // `id + 1` of an int4 id is int4, as in Postgres.
        int[] types = {Types.INTEGER, Types.VARCHAR, Types.TIMESTAMP, Types.DOUBLE, Types.INTEGER};
        String[] typeNames = {"int4", "varchar", "timestamp", "float8", "int4"};
        // pgjdbc looks nullability and the table up in pg_class/pg_attribute by the RowDescription's table OID and attnum.
        int[] nullable = {ResultSetMetaData.columnNoNulls, ResultSetMetaData.columnNoNulls, ResultSetMetaData.columnNullable,
                ResultSetMetaData.columnNullable, ResultSetMetaData.columnNullableUnknown};
        String[] tables = {"jdbc_items", "jdbc_items", "jdbc_items", "jdbc_items", ""};
        for (int i = 1; i <= 5; i++) {
            String col = "column " + i + " ";
            if (origin) {
                eq(nullable[i - 1], m.isNullable(i), col + "isNullable");
                eq(tables[i - 1], m.getTableName(i), col + "getTableName");
                eq(false, m.isAutoIncrement(i), col + "isAutoIncrement");
                continue;
            }
            eq(names[i - 1], m.getColumnName(i), col + "getColumnName");
            eq(names[i - 1], m.getColumnLabel(i), col + "getColumnLabel");
            eq(typeNames[i - 1], m.getColumnTypeName(i), col + "getColumnTypeName");
            eq(types[i - 1], m.getColumnType(i), col + "getColumnType");
        }
        if (origin) return;
        eq(List.of("1|apple|2024-03-01 10:00:00.0|1.25|2", "2|pear|2024-03-01 10:00:30.5|0.5|3", "3|apple|2024-03-01 10:01:00.0|null|4"),
                strings(rs), "rows of jdbc_items");
    }

    static void prepared(Connection c, boolean preparedInsert) throws Exception {
        PreparedStatement ins = c.prepareStatement("INSERT INTO jdbc_items (id, name, ts, price) VALUES (?, ?, ?, ?)");
        PreparedStatement sel = c.prepareStatement(
                "SELECT id, name, ts, price FROM jdbc_items WHERE id >= ? AND id < ? AND name LIKE ? AND (ts IS NULL OR ts >= ?) ORDER BY id");
        int base = preparedInsert ? 200 : 100;
        if (!preparedInsert) ins.unwrap(org.postgresql.PGStatement.class).setPrepareThreshold(0); // only the SELECT reaches it
        for (int i = 0; i < 10; i++) { // prepareThreshold is 5: from the 5th execution pgjdbc uses S_n and binary results
            int id = base + i;
            Timestamp ts = Timestamp.valueOf("2024-03-02 12:00:0" + i + ".25");
            ins.setInt(1, id);
            ins.setString(2, "ps" + base + "-" + i + " \u00e9\u00e8 'q'");
            if (i == 3) { ins.setNull(3, Types.TIMESTAMP); ins.setNull(4, Types.DOUBLE); }
            else { ins.setTimestamp(3, ts); ins.setDouble(4, i + 0.1); }
            eq(1, ins.executeUpdate(), "insert " + i + " update count");
            sel.setLong(1, base); // Metabase binds int8 against int4 columns
            sel.setInt(2, base + 100);
            sel.setString(3, "ps" + base + "-%");
            sel.setTimestamp(4, Timestamp.valueOf("2024-03-01 00:00:00"));
            List<String> got = strings(sel.executeQuery());
            eq(i + 1, got.size(), "rows after insert " + i + ": " + got);
            String exp = id + "|ps" + base + "-" + i + " \u00e9\u00e8 'q'|" + (i == 3 ? "null|null" : ts + "|" + (i + 0.1));
            eq(exp, got.get(i), "row " + id + " on execution " + (i + 1));
        }
        ok(((org.postgresql.PGStatement) sel).isUseServerPrepare(), "statement switched to a server-side prepared statement");
    }

    static void typedParams(Connection c) throws Exception {
        PreparedStatement ps = c.prepareStatement(
                "SELECT ?::int4 AS i, ?::int8 AS l, ?::float8 AS d, ?::text AS s, ?::timestamp AS ts, ?::bool AS b, ?::numeric AS n");
        Map<String, String> bad = new LinkedHashMap<>(); // the first mismatch of each type
        for (int k = 0; k < 8; k++) {
            Timestamp ts = Timestamp.valueOf("2023-12-31 23:59:5" + k + ".123456");
            ps.setInt(1, -k * 1000); ps.setLong(2, 5_000_000_000L + k); ps.setDouble(3, k / 3.0);
            ps.setString(4, "k=" + k); ps.setTimestamp(5, ts); ps.setBoolean(6, k % 2 == 0);
            ps.setBigDecimal(7, new BigDecimal("12345.678" + k));
            ResultSet rs = ps.executeQuery();
            ok(rs.next(), "one row");
            String at = " on execution " + (k + 1);
            Object[][] cases = {{-k * 1000, rs.getInt(1), "int4"}, {5_000_000_000L + k, rs.getLong(2), "int8"},
                    {k / 3.0, rs.getDouble(3), "float8"}, {"k=" + k, rs.getString(4), "text"}, {ts, rs.getTimestamp(5), "timestamp"},
                    {k % 2 == 0, rs.getBoolean(6), "bool"}, {new BigDecimal("12345.678" + k), rs.getBigDecimal(7), "numeric"}};
            for (Object[] t : cases) {
                // An unconstrained numeric has scale 10 in Freshet (Postgres keeps each
                // value's own): the same number, more trailing zeros.
                boolean same = t[0] instanceof BigDecimal && t[1] instanceof BigDecimal
                        ? ((BigDecimal) t[0]).compareTo((BigDecimal) t[1]) == 0
                        : Objects.equals(t[0], t[1]);
                if (!same) bad.putIfAbsent((String) t[2], t[2] + at + ": expected <" + t[0] + "> but got <" + t[1] + ">");
            }
            ok(!rs.next(), "only one row");
        }
        ok(bad.isEmpty(), String.join("; ", bad.values()));
    }

    static void fetchSize(Connection c) throws Exception {
        c.setAutoCommit(false); // with a fetch size pgjdbc then runs a named portal C_n and Executes 100 rows at a time
        Statement st = c.createStatement();
        st.setFetchSize(100);
        ResultSet rs = st.executeQuery("SELECT id, label FROM jdbc_big ORDER BY id");
        int n = 0;
        while (rs.next()) {
            n++;
            eq(n, rs.getInt(1), "id of row " + n);
            eq("row " + n, rs.getString(2), "label of row " + n);
            if (n == 2500) { // another statement while the portal is suspended (DBeaver reads metadata like this)
                ResultSet other = c.createStatement().executeQuery("SELECT count(*) FROM jdbc_big");
                other.next();
                eq((long) BIG_ROWS, other.getLong(1), "count(*) while a portal is open");
            }
        }
        eq(BIG_ROWS, n, "rows read with fetchSize 100");
        PreparedStatement ps = c.prepareStatement("SELECT id, label FROM jdbc_big WHERE id > ? ORDER BY id");
        ps.setFetchSize(250);
        for (int k = 0; k < 6; k++) {
            ps.setInt(1, k * 10);
            ResultSet prs = ps.executeQuery();
            int m = 0;
            while (prs.next()) { m++; eq(k * 10 + m, prs.getInt(1), "prepared fetch id"); }
            eq(BIG_ROWS - k * 10, m, "prepared fetchSize rows on execution " + (k + 1));
        }
        c.commit();
        c.setAutoCommit(true);
        Statement lim = c.createStatement();
        lim.setMaxRows(10);
        eq(10, strings(lim.executeQuery("SELECT id FROM jdbc_big ORDER BY id")).size(), "setMaxRows(10)");
    }

    static void commitRollback(Connection c) throws Exception {
        try (Connection other = DriverManager.getConnection(url, props)) {
            c.setAutoCommit(false);
            c.createStatement().executeUpdate("INSERT INTO jdbc_items VALUES (500, 'tx', NULL, NULL)");
            eq(1L, scalar(c, "SELECT count(*) FROM jdbc_items WHERE id = 500"), "own uncommitted insert visible");
            eq(0L, scalar(other, "SELECT count(*) FROM jdbc_items WHERE id = 500"), "uncommitted insert invisible to others");
            c.rollback();
            eq(0L, scalar(c, "SELECT count(*) FROM jdbc_items WHERE id = 500"), "rolled-back insert");
            c.createStatement().executeUpdate("INSERT INTO jdbc_items VALUES (501, 'tx', NULL, NULL)");
            c.commit();
            eq(1L, scalar(other, "SELECT count(*) FROM jdbc_items WHERE id = 501"), "committed insert visible to others");
            c.setAutoCommit(true);
        }
    }

    static void errorInTransaction(Connection c) throws Exception {
        c.setAutoCommit(false);
        c.createStatement().executeUpdate("INSERT INTO jdbc_items VALUES (502, 'tx', NULL, NULL)");
        expectError(c, "SELECT * FROM jdbc_no_such_table", "42P01");
        expectError(c, "SELECT 1", "25P02"); // current transaction is aborted
        c.rollback();
        eq(0L, scalar(c, "SELECT count(*) FROM jdbc_items WHERE id = 502"), "insert before the error rolled back");
        expectError(c, "INSERT INTO jdbc_items VALUES (1, 'dup', NULL, NULL)", "23505");
        c.rollback();
        c.createStatement().executeUpdate("INSERT INTO jdbc_items VALUES (503, 'tx', NULL, NULL)");
        Savepoint sp = c.setSavepoint();
        expectError(c, "INSERT INTO jdbc_items (id) VALUES (504)", "23502"); // name is NOT NULL
        c.rollback(sp);
        c.commit();
        eq(1L, scalar(c, "SELECT count(*) FROM jdbc_items WHERE id IN (503, 504)"), "work before the savepoint kept");
        c.setAutoCommit(true);
    }

    static void sessionSettings(Connection c) throws Exception {
        c.createStatement().execute("SET search_path = public");
        eq("public", scalarString(c, "SHOW search_path"), "SHOW search_path");
        c.setReadOnly(true);
        c.setAutoCommit(false); // pgjdbc now sends BEGIN READ ONLY
        eq(3L, scalar(c, "SELECT count(*) FROM jdbc_items WHERE id < 4"), "query in a read-only transaction");
        expectError(c, "INSERT INTO jdbc_items VALUES (505, 'ro', NULL, NULL)", "25006");
        c.rollback();
        c.setAutoCommit(true);
        c.setReadOnly(false);
    }

    static void schemaObjects(Connection c) throws Exception {
        DatabaseMetaData md = c.getMetaData();
        ok(column(md.getSchemas(), "TABLE_SCHEM").contains("jdbc_s"), "getSchemas lacks jdbc_s");
        Map<String, String> kinds = new TreeMap<>();
        for (Map<String, Object> r : rows(md.getTables(null, "jdbc_s", "%", null)))
            kinds.put((String) r.get("TABLE_NAME"), (String) r.get("TABLE_TYPE"));
        eq(Map.of("jdbc_items", "TABLE", "stock", "MATERIALIZED VIEW", "jdbc_items_pkey", "INDEX"), kinds, "getTables(jdbc_s)");
        eq(List.of("sku", "qty"), column(md.getColumns(null, "jdbc_s", "jdbc_items", "%"), "COLUMN_NAME"), "getColumns(jdbc_s.jdbc_items)");
        eq(List.of("sku"), column(md.getPrimaryKeys(null, "jdbc_s", "jdbc_items"), "COLUMN_NAME"), "getPrimaryKeys(jdbc_s.jdbc_items)");
        ResultSet rs = c.createStatement().executeQuery("SELECT sku, qty FROM jdbc_s.jdbc_items ORDER BY sku");
        ResultSetMetaData m = rs.getMetaData();
        for (int i = 1; i <= 2; i++) {
            eq("jdbc_items", m.getTableName(i), "column " + i + " getTableName");
            // pgjdbc's getSchemaName is always ""; the base schema comes from pg_class.
            eq("jdbc_s", m.unwrap(org.postgresql.PGResultSetMetaData.class).getBaseSchemaName(i),
                    "column " + i + " getBaseSchemaName");
        }
        eq(ResultSetMetaData.columnNoNulls, m.isNullable(1), "jdbc_s.jdbc_items.sku isNullable");
        eq(List.of("a-1|4", "b-2|null"), strings(rs), "rows of jdbc_s.jdbc_items");
        eq(2L, scalar(c, "SELECT n FROM jdbc_s.stock"), "jdbc_s.stock");
    }

    static void currentSchema(Connection ignored) throws Exception {
        Properties p = new Properties();
        p.putAll(props);
        p.setProperty("currentSchema", "jdbc_s");
        try (Connection c = DriverManager.getConnection(url, p)) {
            expectError(c, "SELECT count(*) FROM jdbc_items", "0A000");
            c.createStatement().execute("SET search_path TO public");
            eq(3L, scalar(c, "SELECT count(*) FROM jdbc_items WHERE id < 4"), "after SET search_path TO public");
        }
    }

    // ---- helpers
    static void check(String name, Check body) {
        try (Connection c = DriverManager.getConnection(url, props)) {
            body.run(c);
            System.out.println("ok   " + name);
        } catch (Throwable e) {
            String why = e instanceof SQLException ? "SQLState " + ((SQLException) e).getSQLState() + ": " + e.getMessage() : e.toString();
            failures.add(name + ": " + why);
            System.out.println("FAIL " + name + ": " + why);
        }
    }

    static void expectError(Connection c, String sql, String sqlState) {
        try {
            c.createStatement().execute(sql);
        } catch (SQLException e) {
            eq(sqlState, e.getSQLState(), "SQLState of " + sql + " (" + e.getMessage() + ")");
            return;
        }
        throw new AssertionError("no error from " + sql + " (expected SQLState " + sqlState + ")");
    }

    static long scalar(Connection c, String sql) throws SQLException {
        ResultSet rs = c.createStatement().executeQuery(sql);
        rs.next();
        return rs.getLong(1);
    }

    static String scalarString(Connection c, String sql) throws SQLException {
        ResultSet rs = c.createStatement().executeQuery(sql);
        rs.next();
        return rs.getString(1);
    }

    static List<Map<String, Object>> rows(ResultSet rs) throws SQLException {
        List<Map<String, Object>> out = new ArrayList<>();
        ResultSetMetaData m = rs.getMetaData();
        while (rs.next()) {
            Map<String, Object> r = new LinkedHashMap<>();
            for (int i = 1; i <= m.getColumnCount(); i++) r.put(m.getColumnLabel(i).toUpperCase(), rs.getObject(i));
            out.add(r);
        }
        return out;
    }

    static List<String> column(ResultSet rs, String name) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) out.add(rs.getString(name));
        return out;
    }

    static int count(ResultSet rs, String col, Set<String> wanted) throws SQLException {
        Set<String> seen = new HashSet<>(column(rs, col));
        seen.retainAll(wanted);
        return seen.size();
    }

    static List<String> strings(ResultSet rs) throws SQLException {
        List<String> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            StringJoiner j = new StringJoiner("|");
            for (int i = 1; i <= n; i++) j.add(String.valueOf(rs.getObject(i)));
            out.add(j.toString());
        }
        return out;
    }

    static void eq(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual))
            throw new AssertionError(what + ": expected <" + expected + "> but got <" + actual + ">");
    }

    static void ok(boolean cond, String what) { if (!cond) throw new AssertionError(what); }

    static String env(String k, String d) { String v = System.getenv(k); return v == null || v.isEmpty() ? d : v; }
}
