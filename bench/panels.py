"""Times every dashboard panel over HTTP (as the page asks for them: whole range, a month, a country)."""
import json, os, platform, re, subprocess, sys, time, urllib.request

shopstream, data_dir = sys.argv[1], sys.argv[2]
server = subprocess.Popen([shopstream, "--data-dir", data_dir, "serve", "--listen", "127.0.0.1:0", "--pg-listen", "off"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
url = re.search(r"http://[\d.:]+", server.stdout.readline()).group(0).rstrip(":")
PANELS = ["kpis", "revenue_over_time", "countries", "top_products", "top_customers", "rfm_segments",
          "new_vs_returning", "basket_size"]
FILTERS = ["", "from=2011-11-01&to=2011-12-01", "country=France", "from=2011-01-01&to=2012-01-01&grain=week"]
REPEAT = int(os.environ.get("REPEAT", "5"))
try:
    t = time.perf_counter()
    urllib.request.urlopen(f"{url}/api/panels/kpis").read()  # builds the panel aggregates
    print(f"first panel request (builds the aggregates of orders): {(time.perf_counter() - t) * 1000:.0f} ms")
    print(f"{'panel':<20} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    worst = 0
    for p in PANELS:
        times = []
        for _ in range(REPEAT):
            for f in FILTERS:
                t = time.perf_counter()
                urllib.request.urlopen(f"{url}/api/panels/{p}?{f}").read()
                times.append((time.perf_counter() - t) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        worst = max(worst, p95)
        print(f"{p:<20} {times[len(times)//2]:>8.0f} {p95:>8.0f} {times[-1]:>8.0f}")
    print(f"worst p95: {worst:.0f} ms (target 100 ms)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
finally:
    server.kill()
    server.wait()
