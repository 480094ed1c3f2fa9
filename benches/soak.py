"""Soak test: holds mixed load on a release server for a while and reports what happened.

Usage: soak.py BINARY [SECONDS] [CLIENTS]

Registers a handful of functions (hello, an echo, a deliberate failure, a slow one, a CGI
handler and a cron ticker), then keeps CLIENTS threads busy with invocations, async runs,
management calls, metrics and re-registrations. Reports requests served, answers by status
(the failure function's 500s are deliberate), the server's peak RSS, and processes left
behind by runs. Exits non-zero on an unexpected 5xx or a leftover process.
"""
import base64
import collections
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HELLO = 'package main\nimport "fmt"\nfunc main() { fmt.Println("Hello, World!") }\n'
ECHO = 'package main\nimport ("io"; "os")\nfunc main() { io.Copy(os.Stdout, os.Stdin) }\n'
FAIL = 'package main\nimport ("fmt"; "os")\nfunc main() { fmt.Fprintln(os.Stderr, "boom"); os.Exit(3) }\n'
SLOW = 'package main\nimport ("fmt"; "time")\nfunc main() { time.Sleep(300 * time.Millisecond); fmt.Println("slow") }\n'
CGI = '''package main
import ("fmt"; "net/http"; "net/http/cgi")
func main() { cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(201); fmt.Fprint(w, r.URL.Path) })) }
'''
TICK = 'package main\nimport "fmt"\nfunc main() { fmt.Println("tick") }\n'

RUN_UIDS = (65000, 65499)


def request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def register(port, name, source, **extra):
    body = dict(name=name, trigger="http", code=base64.b64encode(source.encode()).decode(), **extra)
    return request(port, "PUT", "/register", json.dumps(body))


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def leftovers():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            if RUN_UIDS[0] <= uid <= RUN_UIDS[1]:
                found.append(int(entry))
    return found


def main():
    binary = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 180
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    data = tempfile.mkdtemp(prefix="golambda-soak-")
    server = subprocess.Popen(
        [binary, "--addr", "127.0.0.1:0", "--data-dir", data, "--log-level", "warn",
         "--run-uids", f"{RUN_UIDS[0]}-{RUN_UIDS[1]}", "--timeout", "5s"],
        stdout=subprocess.PIPE)
    port = int(server.stdout.readline().decode().rsplit(":", 1)[1])
    idle_rss = rss_kib(server.pid, "VmRSS")
    for name, source, extra in [("hello", HELLO, {}), ("echo", ECHO, {"response": "raw"}),
                                ("fail", FAIL, {}), ("slow", SLOW, {}),
                                ("page", CGI, {"response": "cgi"})]:
        assert register(port, name, source, **extra) in (200, 201), name
    body = dict(name="tick", trigger="@every 1s", code=base64.b64encode(TICK.encode()).decode())
    assert request(port, "PUT", "/register", json.dumps(body)) in (200, 201)

    statuses = collections.Counter()
    unexpected = collections.Counter()
    lock = threading.Lock()
    deadline = time.time() + seconds

    def client(seed):
        rng = random.Random(seed)
        while time.time() < deadline:
            roll = rng.random()
            if roll < 0.45:
                call, ok = ("GET", "/hello", None), {200}
            elif roll < 0.60:
                call, ok = ("POST", "/echo", os.urandom(rng.randint(0, 4096))), {200}
            elif roll < 0.65:
                call, ok = ("GET", "/fail", None), {500}
            elif roll < 0.72:
                call, ok = ("GET", "/slow", None), {200}
            elif roll < 0.80:
                call, ok = ("GET", "/page/a/b", None), {201}
            elif roll < 0.85:
                call, ok = ("POST", "/async/hello", None), {202}
            elif roll < 0.92:
                call, ok = ("GET", rng.choice(["/functions", "/metrics", "/functions/tick/runs"]), None), {200}
            elif roll < 0.93:
                text = f"Hello, {rng.randint(0, 3)}!"
                source = HELLO.replace("Hello, World!", text)
                body = dict(name="hello", trigger="http", code=base64.b64encode(source.encode()).decode())
                call, ok = ("PUT", "/register", json.dumps(body)), {200}
            else:
                call, ok = ("GET", "/", None), {200}
            status = request(port, *call)
            with lock:
                statuses[status] += 1
                # 503 means the pool was full: load shedding, not a failure.
                if status not in ok and status != 503:
                    unexpected[(call[0], call[1].split("?")[0], status)] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    peak = 0
    started = time.time()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_kib(server.pid, "VmRSS"))
        time.sleep(0.5)
    for t in threads:
        t.join()
    elapsed = time.time() - started
    hwm = rss_kib(server.pid, "VmHWM")
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=60)
    time.sleep(0.5)
    left = leftovers()
    served = sum(statuses.values())
    print(f"soak: {elapsed:.0f} s, {clients} clients, {served} requests ({served / elapsed:.0f}/s)")
    print("answers by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print(f"server RSS: idle {idle_rss / 1024:.1f} MiB, peak {max(peak, hwm) / 1024:.1f} MiB")
    print(f"exit code after SIGTERM: {code}; processes left by runs: {len(left)}")
    if unexpected:
        print("unexpected answers: " + ", ".join(f"{k}: {n}" for k, n in unexpected.items()))
    shutil.rmtree(data, ignore_errors=True)
    sys.exit(1 if unexpected or left or code != 0 or statuses.get(0) else 0)


if __name__ == "__main__":
    main()
