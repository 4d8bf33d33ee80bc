"""HTTP part of bench/log.sh: NDJSON ingest records/s into `shopstream serve` with wrk, and the delay from
HTTP acknowledgement to the rows being committed in the lake (the load's Delta commit carries the offsets,
so `loaded_offset >= acked end` in /v1/status means visible to SQL)."""
import csv, glob, json, os, re, shutil, subprocess, sys, tempfile, threading, time, urllib.request

shopstream, data, work = sys.argv[1], sys.argv[2], sys.argv[3]
RECORDS_PER_REQUEST = int(os.environ.get("RECORDS_PER_REQUEST", "1000"))
SECONDS = os.environ.get("HTTP_SECONDS", "10")
CONNECTIONS = os.environ.get("HTTP_CONNECTIONS", "8")

# A body of real Online Retail lines as NDJSON.
rows = []
for f in sorted(glob.glob(f"{data}/*.csv")):
    with open(f, newline="") as fh:
        rows.extend(csv.DictReader(fh))
    if len(rows) >= RECORDS_PER_REQUEST:
        break
body = "".join(json.dumps(r) + "\n" for r in rows[:RECORDS_PER_REQUEST])
os.makedirs(work, exist_ok=True)
body_file = os.path.join(work, "body.ndjson")
open(body_file, "w").write(body)
lua = os.path.join(work, "post.lua")
open(lua, "w").write(f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()
""")

data_dir = os.path.join(work, "serve")
shutil.rmtree(data_dir, ignore_errors=True)
server = subprocess.Popen([shopstream, "--data-dir", data_dir, "serve", "--listen", "127.0.0.1:0"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
url = re.search(r"http://[\d.:]+", server.stdout.readline()).group(0).rstrip(":")


def status():
    return json.load(urllib.request.urlopen(f"{url}/v1/status"))


try:
    before = status()["http_accepted_records"]
    t0 = time.perf_counter()
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-s", lua, f"{url}/v1/topics/orders/records"],
                         capture_output=True, text=True).stdout
    dt = time.perf_counter() - t0
    s = status()
    accepted = s["http_accepted_records"] - before
    print(f"HTTP NDJSON ingest ({RECORDS_PER_REQUEST} records/request, {len(body)} bytes, {CONNECTIONS} connections, "
          f"wrk {SECONDS}s): {accepted / dt:,.0f} records/s acknowledged durable; "
          f"{s['http_throttled_requests']} requests throttled (429)")
    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if lat:
        print(f"  request latency avg {lat.group(1)}, max {lat.group(3)}")
    # Let the load drain before measuring the delay.
    while sum(p["lag"] for p in s["partitions"]) > 0:
        time.sleep(0.2)
        s = status()

    # Delay from ack to visible in the lake, with a steady background of small requests.
    small = "".join(json.dumps(r) + "\n" for r in rows[:50]).encode()
    stop = threading.Event()

    def background():
        while not stop.is_set():
            req = urllib.request.Request(f"{url}/v1/topics/orders/records", data=small,
                                         headers={"Content-Type": "application/x-ndjson"})
            urllib.request.urlopen(req).read()
            time.sleep(0.005)

    bg = threading.Thread(target=background)
    bg.start()
    delays = []
    for i in range(100):
        req = urllib.request.Request(f"{url}/v1/topics/orders/records", data=small,
                                     headers={"Content-Type": "application/x-ndjson"})
        ack = json.load(urllib.request.urlopen(req))
        t_ack = time.perf_counter()
        p, end = ack["partition"], ack["offsets"][1]
        while True:
            st = status()
            if st["partitions"][p]["loaded_offset"] >= end:
                break
            time.sleep(0.005)
        delays.append(time.perf_counter() - t_ack)
        time.sleep(0.02)
    stop.set()
    bg.join()
    delays.sort()
    print(f"HTTP ack -> visible in the lake (100 requests, background load): p50 {delays[49]*1000:.0f} ms, "
          f"p99 {delays[98]*1000:.0f} ms, max {delays[-1]*1000:.0f} ms")
finally:
    server.kill()
    server.wait()
    shutil.rmtree(data_dir, ignore_errors=True)
