"""Core latency benchmark: register and invoke the GoLambda hello example.

Starts the given server binary on a free port in a fresh temporary data dir, so the first
registration runs with an empty Go build cache, then times each step over real HTTP.
"""
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HELLO = 'package main\n\nimport "fmt"\n\nfunc main() {\n    fmt.Println("Hello, World!")\n}\n'


def request(conn, method, path, body=None):
    start = time.perf_counter()
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - start
    return response.status, data, elapsed


def register(conn, source, name="hello"):
    body = json.dumps({"name": name, "trigger": "http",
                       "code": base64.b64encode(source.encode()).decode()})
    status, data, elapsed = request(conn, "PUT", "/register", body)
    if status not in (200, 201):
        raise SystemExit(f"register failed: {status} {data!r}")
    return elapsed


def main():
    binary, count = sys.argv[1], int(sys.argv[2])
    data_dir = tempfile.mkdtemp(prefix="golambda-bench-")
    server = subprocess.Popen([binary, "--addr", "127.0.0.1:0", "--data-dir", data_dir,
                               "--log-level", "warn"], stdout=subprocess.PIPE)
    try:
        line = server.stdout.readline().decode()
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        cold = register(conn, HELLO)
        repeated = [register(conn, HELLO) for _ in range(20)]
        changed = [register(conn, HELLO.replace("World", f"World {i}")) for i in range(5)]
        register(conn, HELLO)
        for _ in range(20):
            request(conn, "GET", "/hello")
        times = []
        for _ in range(count):
            status, data, elapsed = request(conn, "GET", "/hello")
            if status != 200 or data != b'{"message":"Hello, World!\\n"}\n':
                raise SystemExit(f"bad answer {status} {data!r}")
            times.append(elapsed)
        times.sort()
        ms = lambda s: f"{s * 1000:.2f} ms"
        print("| step | time |")
        print("|---|---|")
        print(f"| PUT /register hello, cold Go build cache | {ms(cold)} |")
        print(f"| PUT /register hello, identical again (median of 20) | {ms(statistics.median(repeated))} |")
        print(f"| PUT /register hello, changed code, warm cache (median of 5) | {ms(statistics.median(changed))} |")
        print(f"| GET /hello p50 ({count} sequential) | {ms(times[len(times) // 2])} |")
        print(f"| GET /hello p90 | {ms(times[int(len(times) * 0.9)])} |")
        print(f"| GET /hello p99 | {ms(times[int(len(times) * 0.99)])} |")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
