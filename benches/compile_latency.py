"""Compile latency: PUT /register against `go build` itself, for hello and a 300-line program.

usage: python3 benches/compile_latency.py target/release/golambda [go] [repeats]

For each program, in the same run:
- `go build` alone, with the flags and environment the server uses (-trimpath,
  CGO_ENABLED=0, GO111MODULE=off), first with an empty build cache (cold) and then
  `repeats` times (default 5) with the cache warm and the source changed each time, so the
  package itself is compiled and linked again;
- the server, in a fresh data dir (so its own build cache starts empty): the first
  PUT /register (cold), then `repeats` registrations of the same changed sources (warm),
  then the identical source registered again (content-addressed: no build at all).
Medians are compared; the server's overhead is (server - go build) / go build. Prints a
Markdown table. Python 3 standard library only.
"""
import base64
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HELLO = 'package main\n\nimport "fmt"\n\nfunc main() {\n    fmt.Println("Hello, World!")\n}\n'


def three_hundred_lines():
    """A 300-line program: types, methods and functions using a few standard packages."""
    lines = ["package main", "", "import (", '\t"fmt"', '\t"sort"', '\t"strings"', ")", ""]
    index = 0
    while len(lines) < 285:
        lines += [
            f"type item{index} struct {{ name string; weight int }}",
            "",
            f"func (i item{index}) label() string {{",
            f'\treturn strings.ToUpper(i.name) + fmt.Sprint(i.weight + {index})',
            "}",
            "",
            f"func sorted{index}(items []item{index}) []string {{",
            "\tsort.Slice(items, func(a, b int) bool { return items[a].weight < items[b].weight })",
            "\tout := make([]string, 0, len(items))",
            "\tfor _, i := range items {",
            "\t\tout = append(out, i.label())",
            "\t}",
            "\treturn out",
            "}",
            "",
        ]
        index += 1
    lines += ["func main() {"]
    lines += [f'\tfmt.Println(sorted{i}([]item{i}{{{{"b", 2}}, {{"a", 1}}}}))' for i in range(index)]
    lines += ["}"]
    return "\n".join(lines) + "\n"


def variant(source, n):
    return source + f"\n// variant {n}\nvar variant{n} = {n}\n"


def go_build(go, source, cache, work):
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "main.go"), "w") as f:
        f.write(source)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": work, "GOCACHE": cache,
           "GOPATH": os.path.join(work, "gopath"), "CGO_ENABLED": "0",
           "GO111MODULE": "off", "GOFLAGS": "", "GOENV": "off", "GOTOOLCHAIN": "local"}
    started = time.perf_counter()
    subprocess.run([go, "build", "-trimpath", "-o", os.path.join(work, "out"), "main.go"],
                   cwd=work, env=env, check=True)
    return time.perf_counter() - started


def register(port, name, source):
    body = json.dumps({"name": name, "trigger": "http",
                       "code": base64.b64encode(source.encode()).decode()})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    conn.request("PUT", "/register", body=body)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status not in (200, 201):
        raise SystemExit(f"register {name}: {response.status} {data!r}")
    return elapsed


def measure(binary, go, name, source, repeats):
    scratch = tempfile.mkdtemp(prefix="golambda-compile-bench-")
    try:
        cache = os.path.join(scratch, "gocache")
        go_cold = go_build(go, source, cache, os.path.join(scratch, "cold"))
        go_warm = [go_build(go, variant(source, i), cache, os.path.join(scratch, f"w{i}"))
                   for i in range(repeats)]
        data_dir = os.path.join(scratch, "data")
        os.makedirs(data_dir)
        server = subprocess.Popen([binary, "--addr", "127.0.0.1:0", "--data-dir", data_dir,
                                   "--log-level", "warn", "--go", go],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            port = int(server.stdout.readline().decode().rsplit(":", 1)[1])
            server_cold = register(port, name, source)
            server_warm = [register(port, name, variant(source, i)) for i in range(repeats)]
            identical = [register(port, name, variant(source, repeats - 1)) for _ in range(repeats)]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        return go_cold, statistics.median(go_warm), server_cold, statistics.median(server_warm), statistics.median(identical)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    binary = sys.argv[1]
    go = sys.argv[2] if len(sys.argv) > 2 else shutil.which("go") or "go"
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    print("| compile latency | go build | PUT /register | server overhead | goal |")
    print("|---|---|---|---|---|")
    for name, source in (("hello", HELLO), ("program300", three_hundred_lines())):
        go_cold, go_warm, cold, warm, same = measure(binary, go, name, source, repeats)
        lines = source.count("\n")
        ratio = lambda server, alone: f"{(server - alone) / alone * 100:+.1f}%"
        print(f"| {name} ({lines} lines), cold build cache | {go_cold * 1000:.0f} ms | {cold * 1000:.0f} ms | {ratio(cold, go_cold)} | ≤ +5% |")
        print(f"| {name}, changed source, warm cache (median of {repeats}) | {go_warm * 1000:.0f} ms | {warm * 1000:.0f} ms | {ratio(warm, go_warm)} | ≤ +5% |")
        print(f"| {name}, identical source again (median of {repeats}) | | {same * 1000:.2f} ms | no build | |")


if __name__ == "__main__":
    main()
