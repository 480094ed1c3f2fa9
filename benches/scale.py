"""Scale benchmark: many registrations of one source, then a restart with that many functions.

usage: python3 benches/scale.py target/release/golambda [functions] [clients]

Starts the given server binary on a free port in a fresh temporary data dir (so the first
registration also builds Go's standard library into the server's empty build cache),
registers `functions` (default 2000) copies of the hello example as hello-0, hello-1, ...
from `clients` (default 4) concurrent connections and times the whole, then stops the server
with SIGTERM, starts it again on the same data dir and measures the time from spawning the
process until GET /hello-<last> answers 200, and the server's resident memory at that point
(VmRSS of /proc/PID/status). Prints a Markdown table. Python 3 standard library only.
"""
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HELLO = 'package main\n\nimport "fmt"\n\nfunc main() {\n    fmt.Println("Hello, World!")\n}\n'
CODE = base64.b64encode(HELLO.encode()).decode()


def start(binary, data_dir, log_path):
    """Spawns the server; returns (process, port, seconds until the listening line)."""
    started = time.perf_counter()
    with open(log_path, "ab") as log:
        server = subprocess.Popen(
            [binary, "--addr", "127.0.0.1:0", "--data-dir", data_dir, "--log-level", "info"],
            stdout=subprocess.PIPE, stderr=log)
    line = server.stdout.readline().decode()
    if "listening on" not in line:
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}; see {log_path}")
    port = int(line.rsplit(":", 1)[1].strip().rstrip("/"))
    return server, port, time.perf_counter() - started


def stop(server):
    server.send_signal(signal.SIGTERM)
    status = server.wait(timeout=60)
    if status != 0:
        raise SystemExit(f"the server exited with {status} after SIGTERM")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def register_all(port, count, clients):
    """Registers hello-0 .. hello-(count-1) from `clients` threads; returns per-call seconds."""
    times, failures = [], []
    lock = threading.Lock()

    def client(first):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for i in range(first, count, clients):
            body = json.dumps({"name": f"hello-{i}", "trigger": "http", "code": CODE})
            began = time.perf_counter()
            conn.request("PUT", "/register", body=body,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - began
            with lock:
                times.append(elapsed)
                if response.status != 201:
                    failures.append((i, response.status, data[:200]))
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} registrations failed, first: {failures[0]}")
    return times


def wait_until_answers(port, path, deadline):
    """Polls GET `path` until it answers 200; returns when it did."""
    while time.perf_counter() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            if response.status == 200:
                if data != b'{"message":"Hello, World!\\n"}\n':
                    raise SystemExit(f"bad answer from {path}: {data!r}")
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit(f"{path} did not answer 200 in time")


def count_lines(path, needle):
    with open(path, errors="replace") as log:
        return sum(1 for line in log if needle in line)


def main():
    binary = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    data_dir = tempfile.mkdtemp(prefix="golambda-scale-")
    log_path = os.path.join(data_dir, "server.log")
    server = None
    try:
        server, port, _ = start(binary, data_dir, log_path)
        began = time.perf_counter()
        times = register_all(port, count, clients)
        total = time.perf_counter() - began
        builds = count_lines(log_path, "] compiled hello-")
        stop(server)

        spawned = time.perf_counter()
        server, port, listening = start(binary, data_dir, log_path)
        ready = wait_until_answers(port, f"/hello-{count - 1}", spawned + 60) - spawned
        rss = rss_mib(server.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        health = json.loads(conn.getresponse().read())
        conn.close()
        if health.get("functions") != count:
            raise SystemExit(f"{health.get('functions')} functions after the restart, not {count}")
        stop(server)
        server = None

        times.sort()
        ms = lambda s: f"{s * 1000:.1f} ms"
        print(f"| {count} functions, one source, {clients} clients | result |")
        print("|---|---|")
        print(f"| all registrations (first one builds the Go std lib cold) | {total:.1f} s |")
        print(f"| registrations per second | {count / total:.0f} |")
        print(f"| PUT /register p50 / p99 / max | {ms(times[len(times) // 2])} / "
              f"{ms(times[int(len(times) * 0.99)])} / {ms(times[-1])} |")
        print(f"| go build runs | {builds} |")
        print(f"| restart: spawn to listening line | {ms(listening)} |")
        print(f"| restart: spawn to GET /hello-{count - 1} answering 200 | {ms(ready)} |")
        print(f"| restart: VmRSS once ready | {rss:.1f} MiB |")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
