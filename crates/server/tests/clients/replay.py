"""Replays the statements real BI clients send when they connect, from fixture files.

Usage: python replay.py DSN FIXTURE.sql...
A fixture holds statements separated by lines `-- next`; `-- protocol: extended` (the default: Npgsql
sends everything with Parse/Bind/Execute) or `-- protocol: simple` says how the client sends it, and
`-- expect: TEXT` lines name a value that must appear in the result (e.g. a type or table name).
`-- known-gap: REASON` marks a statement shopstream does not answer yet: it must still fail (so the list
stays true; remove the line when it passes). Every other statement must succeed; exits non-zero naming
the fixture and statement otherwise, and prints how many statements pass.
"""

import re
import sys

import psycopg

dsn, fixtures = sys.argv[1], sys.argv[2:]
failed = passed = gaps = 0
with psycopg.connect(dsn, autocommit=True) as conn:
    for path in fixtures:
        text = open(path, encoding="utf-8").read()
        parts = [p for p in re.split(r"^-- next\s*$", text, flags=re.M) if p.strip()]
        for i, part in enumerate(parts, 1):
            protocol = "extended"
            expects = []
            gap = None
            sql_lines = []
            for line in part.splitlines():
                m = re.match(r"--\s*protocol:\s*(\w+)", line)
                e = re.match(r"--\s*expect:\s*(.+)$", line)
                g = re.match(r"--\s*known-gap:\s*(.+)$", line)
                if m:
                    protocol = m.group(1)
                elif g:
                    gap = g.group(1).strip()
                elif e:
                    expects.append(e.group(1).strip())
                elif not line.startswith("--"):
                    sql_lines.append(line)
            sql = "\n".join(sql_lines).strip().rstrip(";")
            if not sql:
                continue
            first = " ".join(sql.split())[:70]
            try:
                if protocol == "simple":
                    res = conn.pgconn.exec_(sql.encode())
                    if res.status not in (1, 2):  # COMMAND_OK, TUPLES_OK
                        raise RuntimeError(res.error_message.decode(errors="replace").strip())
                    rows = [
                        tuple((res.get_value(r, c) or b"").decode() for c in range(res.nfields))
                        for r in range(res.ntuples)
                    ]
                else:
                    cur = conn.execute(sql)
                    rows = cur.fetchall() if cur.description else []
                flat = {str(v) for row in rows for v in row}
                missing = [x for x in expects if x not in flat]
                if missing:
                    raise RuntimeError(f"result lacks {missing}")
                if gap:
                    failed += 1
                    print(f"FAILED: {path} #{i} passes now: remove its known-gap line ({gap})")
                    continue
                passed += 1
                print(f"ok: {path.rsplit('/', 1)[-1]} #{i} ({protocol}, {len(rows)} rows): {first}")
            except Exception as e:  # noqa: BLE001 - report every failure, then exit non-zero
                if gap:
                    gaps += 1
                    print(f"known gap: {path.rsplit('/', 1)[-1]} #{i}: {gap}")
                    continue
                failed += 1
                print(f"FAILED: {path} statement #{i} ({protocol}): {first}\n    {e}")
print(f"{passed} statements answered, {gaps} known gaps, {failed} failures")
sys.exit(1 if failed else 0)
