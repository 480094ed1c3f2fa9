"""Cron fire lateness: many functions firing every second, on the real server.

usage: python3 benches/cron_lateness.py target/release/golambda [functions] [seconds]

Starts the server in a fresh temporary data dir, registers `functions` (default 200) copies
of the hello example, each with the schedule `* * * * * *` (every second), lets them fire
for `seconds` (default 20), then reads every function's run history. A fire is due on a
whole second; its lateness is the time from that second to the start of its run (the
history's `started_at`, taken before the process is spawned). Reports fires, skipped
fires and the lateness percentiles as a Markdown table; the fire lateness (from the due time
to the moment the timing thread hands the fire to a cron worker) comes from the server's
`golambda_cron_lateness_seconds` histogram. Python 3 standard library only.
"""
import base64
import concurrent.futures
import datetime
import http.client
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HELLO = 'package main\n\nimport "fmt"\n\nfunc main() {\n    fmt.Println("Hello, World!")\n}\n'
CODE = base64.b64encode(HELLO.encode()).decode()


def call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(method, path, body=body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def register(port, name):
    body = json.dumps({"name": name, "trigger": "* * * * * *", "code": CODE})
    status, data = call(port, "PUT", "/register", body)
    if status not in (200, 201):
        raise SystemExit(f"registering {name}: {status} {data!r}")


def parse_time(text):
    # RFC 3339 with up to nanoseconds; Python takes microseconds.
    head, _, rest = text.partition(".")
    digits = "".join(c for c in rest if c.isdigit())[:6].ljust(6, "0")
    stamp = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S")
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp() + int(digits) / 1e6


def main():
    binary = sys.argv[1]
    functions = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    data_dir = tempfile.mkdtemp(prefix="golambda-cron-bench-")
    server = subprocess.Popen([binary, "--addr", "127.0.0.1:0", "--data-dir", data_dir,
                               "--log-level", "warn"], stdout=subprocess.PIPE)
    try:
        port = int(server.stdout.readline().decode().rsplit(":", 1)[1])
        register(port, "tick-0")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: register(port, f"tick-{i}"), range(1, functions)))
        # Let the schedule settle on whole seconds, then measure a clean window.
        time.sleep(2)
        window_start = time.time()
        time.sleep(seconds)
        window_end = time.time()
        late, skipped = [], 0
        for i in range(functions):
            status, data = call(port, "GET", f"/functions/tick-{i}/runs?limit=100")
            if status != 200:
                raise SystemExit(f"runs of tick-{i}: {status}")
            for run in json.loads(data):
                started = parse_time(run["started_at"])
                if not window_start <= started < window_end:
                    continue
                if run["status"] == "skipped":
                    skipped += 1
                    continue
                late.append(started - int(started))
        late.sort()
        status, metrics = call(port, "GET", "/metrics")
        fired = {}
        for line in metrics.decode().splitlines():
            if line.startswith('golambda_cron_lateness_seconds_bucket{stage="fired"'):
                bound = line.split('le="')[1].split('"')[0]
                fired[bound] = int(line.rsplit(" ", 1)[1])
        total = fired.get("+Inf", 0)

        def bucket_pct(p):
            for bound, count in fired.items():
                if bound != "+Inf" and count >= total * p:
                    return f"≤ {float(bound) * 1000:g} ms"
            return "> 5 s"
        pct = lambda p: late[min(len(late) - 1, int(len(late) * p))] * 1000
        expected = functions * seconds
        print("| cron fire lateness | figure | goal |")
        print("|---|---|---|")
        print(f"| {functions} functions every second, {seconds} s: fires run / skipped (expected ≈ {expected}) | {len(late)} / {skipped} | |")
        print(f"| fire lateness (due → handed to a cron worker; whole run, {total} fires) p50 / p99 | {bucket_pct(0.5)} / {bucket_pct(0.99)} | p99 < 50 ms |")
        print(f"| run start lateness (due → run begun) p50 / p90 / p99 / max | {pct(0.5):.1f} / {pct(0.9):.1f} / {pct(0.99):.1f} / {late[-1] * 1000:.1f} ms | |")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
