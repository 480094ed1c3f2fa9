"""Warm (fcgi) throughput benchmark: requests per second through a warm FastCGI function.

Usage: fcgi.py BINARY [SECONDS] [CONNECTIONS] [CLIENT_PROCESSES]

Starts the given (release) server binary on a free port in a fresh temporary data dir,
registers a hello world written with Go's net/http/fcgi ("response": "fcgi") and the same
hello as a one-shot "cgi" function for comparison, warms both, then measures:
- throughput: CONNECTIONS (default 16) keep-alive HTTP/1.1 connections, each sending its
  next request as soon as the previous answer is in, for SECONDS (default 10), driven by
  CLIENT_PROCESSES (default 2) processes that each run a small select loop over raw sockets
  (Python threads would be held back by the GIL);
- latency: one client, one keep-alive connection, requests one after another.
Prints a Markdown table. Python standard library only. On a small machine the client
shares the CPU with the server: its own CPU time is printed too.
"""
import base64
import http.client
import json
import multiprocessing
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

FCGI_HELLO = '''package main

import (
	"net/http"
	"net/http/fcgi"
)

func main() {
	fcgi.Serve(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("Hello, World!\\n"))
	}))
}
'''

CGI_HELLO = '''package main

import (
	"net/http"
	"net/http/cgi"
)

func main() {
	cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("Hello, World!\\n"))
	}))
}
'''

# Far from the uids of test servers and the soak test: a server kills every process of a
# run uid it uses, so servers sharing uids would kill each other's warm processes.
RUN_UIDS = "300000-300099"


def register(port, name, source, response):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"name": name, "trigger": "http", "response": response,
                       "code": base64.b64encode(source.encode()).decode()})
    conn.request("PUT", "/register", body=body, headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    if answer.status not in (200, 201):
        raise SystemExit(f"registering {name} failed: {answer.status} {data!r}")


def latency(port, path, count, expect=b"Hello, World!\n"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("GET", path)
        answer = conn.getresponse()
        data = answer.read()
        times.append(time.perf_counter() - start)
        if answer.status != 200 or (expect is not None and data != expect):
            raise SystemExit(f"bad answer {answer.status} {data!r}")
    conn.close()
    times.sort()
    return times


def load(port, path, connections, seconds, results):
    """One client process: `connections` keep-alive sockets in a select loop."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    selector = selectors.DefaultSelector()
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        selector.register(sock, selectors.EVENT_READ, bytearray())
    done = bad = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            sock, buf = key.fileobj, key.data
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("the server closed a keep-alive connection")
            buf += chunk
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                head = bytes(buf[:head_end]).lower()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                total = head_end + 4 + length
                if len(buf) < total:
                    break
                if not head.startswith(b"http/1.1 200"):
                    bad += 1
                    if bad <= 3:
                        print("unexpected answer:", bytes(buf[:total])[:600], file=sys.stderr)
                del buf[:total]
                done += 1
                sock.sendall(request)
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put((done, bad, usage.ru_utime + usage.ru_stime))


def throughput(port, path, connections, seconds, processes):
    results = multiprocessing.Queue()
    shares = [connections // processes + (1 if i < connections % processes else 0)
              for i in range(processes)]
    workers = [multiprocessing.Process(target=load, args=(port, path, n, seconds, results))
               for n in shares if n > 0]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    totals = [results.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    done = sum(t[0] for t in totals)
    bad = sum(t[1] for t in totals)
    client_cpu = sum(t[2] for t in totals)
    return done / elapsed, bad, client_cpu / elapsed


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main():
    binary = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    processes = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    data_dir = tempfile.mkdtemp(prefix="golambda-fcgi-bench-")
    os.chmod(data_dir, 0o755)
    server = subprocess.Popen([binary, "--addr", "127.0.0.1:0", "--data-dir", data_dir,
                               "--log-level", "warn", "--run-uids", RUN_UIDS],
                              stdout=subprocess.PIPE)
    try:
        line = server.stdout.readline().decode()
        port = int(line.rsplit(":", 1)[1])
        register(port, "hello", FCGI_HELLO, "fcgi")
        register(port, "once", CGI_HELLO, "cgi")
        latency(port, "/hello", 200)
        latency(port, "/once", 20)
        rows = []
        modes = (
            ("warm `fcgi`", "/hello", seconds, b"Hello, World!\n"),
            ("one-shot `cgi` (a process per request)", "/once", max(seconds / 2, 1),
             b"Hello, World!\n"),
            # The HTTP layer alone: GET / runs no function (answered in the accept loop).
            ("`GET /` health, no function (HTTP layer ceiling)", "/", max(seconds / 2, 1),
             None),
        )
        for name, path, secs, expect in modes:
            server_cpu = cpu_seconds(server.pid)
            start = time.perf_counter()
            rate, bad, client_cpu = throughput(port, path, connections, secs, processes)
            server_cpu = (cpu_seconds(server.pid) - server_cpu) / (time.perf_counter() - start)
            if bad:
                raise SystemExit(f"{bad} answers to {path} were not 200")
            times = latency(port, path, 300 if path == "/once" else 2000, expect)
            p = lambda q: times[min(int(len(times) * q), len(times) - 1)] * 1000
            rows.append((name, rate, p(0.5), p(0.9), p(0.99), server_cpu, client_cpu))
        print(f"{connections} keep-alive connections for {seconds:g} s (the others for "
              f"{max(seconds / 2, 1):g} s) from {processes} client processes; latency: one "
              f"client, sequential. Server CPU is golambda's own (not the function's).")
        print()
        print("| mode | requests/s | p50 | p90 | p99 | server CPU | client CPU |")
        print("|---|---|---|---|---|---|---|")
        for name, rate, p50, p90, p99, scpu, ccpu in rows:
            print(f"| {name} | {rate:,.0f} | {p50:.3f} ms | {p90:.3f} ms | {p99:.3f} ms "
                  f"| {scpu:.2f} cores | {ccpu:.2f} cores |")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
