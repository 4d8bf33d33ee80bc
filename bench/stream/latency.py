"""Latency part of bench/stream.sh: HTTP acknowledgement -> change on a view's stream, while ingesting.

`shopstream serve` (embedded defaults) runs one view, `lat`, over `orders`: a running count(*) of the lines
loaded (an updating aggregate). Poster threads send the real Online Retail lines as NDJSON requests of
RECORDS_PER_REQUEST lines, paced to RATE lines/s in total, for SECONDS, each line's InvoiceDate the moment
its request is sent (UTC, the default [ingest] timezone), as a live shop's. A reader follows
`GET /api/views/lat/stream` (Server-Sent Events) and notes when each update arrives and the count it shows.

For each request acknowledged at t (the 200 answer received), with A lines acknowledged in all by then, its
delay is the time from t to the first update showing at least A lines: every line acknowledged by t is in the
view by then (an upper bound of each line's own delay). The first and last 2 s are left out (ramp up and
drain). Prints one JSON line: achieved rate, p50/p99/max delay, requests measured, requests throttled.

With DEFAULT_VIEWS=1 the dashboard's default views (`shopstream view defaults`) run as well.

usage: latency.py SHOPSTREAM DATA_DIR(by-day CSVs) WORK
"""
import csv, glob, http.client, json, os, re, shutil, subprocess, sys, threading, time, urllib.parse

shopstream, data, work = sys.argv[1], sys.argv[2], sys.argv[3]
RATE = int(os.environ.get("RATE", "50000"))
RECORDS_PER_REQUEST = int(os.environ.get("RECORDS_PER_REQUEST", "1000"))
SECONDS = float(os.environ.get("LATENCY_SECONDS", "20"))
POSTERS = int(os.environ.get("POSTERS", "4"))
EDGE = 2.0

rows = []
for f in sorted(glob.glob(f"{data}/*.csv")):
    with open(f, newline="") as fh:
        rows.extend(csv.DictReader(fh))
    if len(rows) >= 50 * RECORDS_PER_REQUEST:
        break
# As a live shop sends them: each line's InvoiceDate is the moment its request is sent.
NOW = "@@NOW@@"
for r in rows:
    r["InvoiceDate"] = NOW
bodies = [
    "".join(json.dumps(r) + "\n" for r in rows[i:i + RECORDS_PER_REQUEST])
    for i in range(0, len(rows) - RECORDS_PER_REQUEST + 1, RECORDS_PER_REQUEST)
]

os.makedirs(work, exist_ok=True)
data_dir = os.path.join(work, "latency-serve")
shutil.rmtree(data_dir, ignore_errors=True)
config = os.path.join(work, "latency.toml")
with open(config, "w") as f:
    f.write('[[views]]\nname = "lat"\nsql = "SELECT count(*) AS lines FROM orders"\n')
if os.environ.get("DEFAULT_VIEWS"):
    # The dashboard's views too (revenue per minute, and two hopping windows of an hour every minute).
    subprocess.run([shopstream, "--data-dir", data_dir, "view", "defaults"], check=True,
                   stdout=subprocess.DEVNULL)
server = subprocess.Popen(
    [shopstream, "--data-dir", data_dir, "--config", config, "serve", "--listen", "127.0.0.1:0"],
    stdout=subprocess.PIPE, stderr=open(os.path.join(work, "latency-serve.log"), "w"), text=True)
url = re.search(r"http://[\d.:]+", server.stdout.readline()).group(0).rstrip(":")
host = urllib.parse.urlparse(url)

updates = []  # (time, lines)
stop = threading.Event()


def read_stream():
    """Follows the change stream until the server goes, noting (arrival time, lines) per update."""
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    conn.request("GET", "/api/views/lat/stream")
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    for raw in resp:
        line = raw.decode().strip()
        if line.startswith("data:"):
            update = json.loads(line[5:])
            lines = sum(r.get("lines", 0) for r in update.get("live", []))
            updates.append((time.perf_counter(), lines))
        if stop.is_set():
            break


acks = []  # (time, lines acknowledged by this request)
throttled = [0]
lock = threading.Lock()


def post(n, start):
    """Poster n of POSTERS: requests n, n + POSTERS, ... each at its slot of the total pace."""
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    interval = RECORDS_PER_REQUEST / RATE
    i = n
    while True:
        due = start + i * interval
        if due - start > SECONDS:
            return
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = bodies[i % len(bodies)].replace(NOW, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())).encode()
        conn.request("POST", "/v1/topics/orders/records", body=body,
                     headers={"Content-Type": "application/x-ndjson"})
        resp = conn.getresponse()
        resp.read()
        now = time.perf_counter()
        with lock:
            if resp.status == 200:
                acks.append((now, RECORDS_PER_REQUEST))
            else:
                throttled[0] += 1
        i += POSTERS


try:
    # Wait for the view to run (its stream exists once the view is claimed).
    deadline = time.time() + 60
    while True:
        try:
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=5)
            conn.request("GET", "/v1/status")
            st = json.loads(conn.getresponse().read())
            if any(v.get("name") == "lat" for v in st.get("views", [])):
                break
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit("the view `lat` did not start within 60 s")
        time.sleep(0.2)
    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    time.sleep(1)
    start = time.perf_counter()
    posters = [threading.Thread(target=post, args=(n, start)) for n in range(POSTERS)]
    for t in posters:
        t.start()
    for t in posters:
        t.join()
    posted_for = time.perf_counter() - start
    total = sum(n for _, n in acks)
    # Let the view catch up with everything acknowledged (or give up after 30 s).
    deadline = time.perf_counter() + 30
    while (not updates or updates[-1][1] < total) and time.perf_counter() < deadline:
        time.sleep(0.1)
    stop.set()
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    conn.request("GET", "/v1/status")
    views = {v["name"]: {"rows_in": v["rows_in"], "lag": v["lag"]}
             for v in json.loads(conn.getresponse().read()).get("views", [])}
    acks.sort()
    delays, acked, u = [], 0, 0
    for t, n in acks:
        acked += n
        while u < len(updates) and updates[u][1] < acked:
            u += 1
        if start + EDGE <= t <= start + posted_for - EDGE:
            # An update may show the lines before their answer reached the poster: no delay then.
            delays.append(max(0.0, updates[u][0] - t) if u < len(updates) else float("inf"))
    delays.sort()
    pick = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))] if delays else None
    print(json.dumps({
        "job": "latency", "rate_asked": RATE, "rate_acked": round(total / posted_for),
        "records_per_request": RECORDS_PER_REQUEST, "seconds": round(posted_for, 1),
        "requests_measured": len(delays), "requests_throttled": throttled[0],
        "updates": len(updates), "p50_ms": round(pick(0.5) * 1000) if delays else None,
        "p99_ms": round(pick(0.99) * 1000) if delays else None,
        "max_ms": round(delays[-1] * 1000) if delays else None,
        "caught_up": bool(updates) and updates[-1][1] >= total,
        "views": views,
    }))
finally:
    server.kill()
    server.wait()
    shutil.rmtree(data_dir, ignore_errors=True)
