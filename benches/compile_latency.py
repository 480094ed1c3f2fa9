"""Compile latency: PUT /register against `go build` itself, for hello, a 300-line program
and a package with a vendored module.

usage: python3 benches/compile_latency.py target/release/golambda [go] [repeats] [cold rounds]

For each program, `go build` alone (with the flags and environment the server uses:
-trimpath, CGO_ENABLED=0, and for the package -mod=vendor with GOPROXY=off, its `main`
folder as the target; the package is registered as a tar.gz) and the server are measured
in pairs, one right
after the other, so that a machine that speeds up or slows down during the run moves both
sides of a pair alike:
- cold, `cold rounds` times (default 3): `go build` with an empty build cache, then a
  server on a fresh data dir (so its own build cache starts empty) answering its first
  PUT /register;
- warm, `repeats` times (default 5), on the last cold round's caches: the source changed
  each time (so the package itself is compiled and linked again), built alone and then
  registered;
- then the identical source registered again (content-addressed: no build at all).
The server's overhead is the median over the pairs of (server - go build) / go build; the
times shown are medians. Prints a Markdown table. Python 3 standard library only.
"""
import base64
import http.client
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
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


class Single:
    """One source file, as the server builds it: in module mode with a go.mod of its own."""

    def __init__(self, source):
        self.source = source
        self.lines = source.count("\n")

    def files(self, n):
        text = self.source if n is None else variant(self.source, n)
        return {"main.go": text, "go.mod": "module function\n\ngo 1.19\n"}

    target, flags, main = "main.go", [], None

    def code(self, n):
        return (self.source if n is None else variant(self.source, n)).encode()


class Vendored:
    """A package: its own module, one dependency vendored, `package main` in cmd/hello."""

    target, flags, main = "./cmd/hello", ["-mod=vendor"], "cmd/hello"

    def __init__(self):
        self.lines = sum(text.count("\n") for text in self.files(None).values())

    def files(self, n):
        main = ('package main\n\nimport (\n\t"fmt"\n\n\t"example.com/greet"\n)\n\n'
                'func main() {\n\tfmt.Println(greet.Hello())\n}\n')
        return {
            "go.mod": "module example.com/fn\n\ngo 1.19\n\nrequire example.com/greet v1.0.0\n",
            "vendor/modules.txt": "# example.com/greet v1.0.0\n## explicit\nexample.com/greet\n",
            "vendor/example.com/greet/greet.go":
                'package greet\n\nimport "strings"\n\n'
                'func Hello() string { return strings.ToUpper("hello from a module") }\n',
            "cmd/hello/main.go": main if n is None else variant(main, n),
        }

    def code(self, n):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for name, text in sorted(self.files(n).items()):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = time.time()
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


def go_build(go, program, n, cache, work):
    for name, text in program.files(n).items():
        path = os.path.join(work, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": work, "GOCACHE": cache,
           "GOPATH": os.path.join(work, "gopath"), "CGO_ENABLED": "0",
           "GO111MODULE": "on", "GOPROXY": "off", "GOSUMDB": "off", "GOWORK": "off",
           "GOFLAGS": "", "GOENV": "off", "GOTOOLCHAIN": "local"}
    started = time.perf_counter()
    subprocess.run([go, "build", "-trimpath", *program.flags, "-o", os.path.join(work, "out"),
                    program.target], cwd=work, env=env, check=True)
    return time.perf_counter() - started


def register(port, name, program, n):
    fields = {"name": name, "trigger": "http",
              "code": base64.b64encode(program.code(n)).decode()}
    if program.main:
        fields["main"] = program.main
    body = json.dumps(fields)
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


def start_server(binary, go, data_dir):
    os.makedirs(data_dir)
    server = subprocess.Popen([binary, "--addr", "127.0.0.1:0", "--data-dir", data_dir,
                               "--log-level", "warn", "--go", go],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = int(server.stdout.readline().decode().rsplit(":", 1)[1])
    return server, port


def stop_server(server):
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)


def overhead(pairs):
    """The median over (go build, server) pairs of the server's extra share."""
    return statistics.median((server - alone) / alone for alone, server in pairs)


def measure(binary, go, name, program, repeats, colds):
    scratch = tempfile.mkdtemp(prefix="golambda-compile-bench-")
    try:
        cold, server, port = [], None, None
        for round_ in range(colds):
            if server is not None:
                stop_server(server)
            cache = os.path.join(scratch, f"gocache{round_}")
            alone = go_build(go, program, None, cache, os.path.join(scratch, f"cold{round_}"))
            server, port = start_server(binary, go, os.path.join(scratch, f"data{round_}"))
            cold.append((alone, register(port, name, program, None)))
        try:
            warm = []
            for i in range(repeats):
                alone = go_build(go, program, i, cache, os.path.join(scratch, f"w{i}"))
                warm.append((alone, register(port, name, program, i)))
            identical = [register(port, name, program, repeats - 1) for _ in range(repeats)]
        finally:
            stop_server(server)
        return cold, warm, statistics.median(identical)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    binary = sys.argv[1]
    go = sys.argv[2] if len(sys.argv) > 2 else shutil.which("go") or "go"
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    colds = max(1, int(sys.argv[4]) if len(sys.argv) > 4 else 3)
    print("| compile latency | go build | PUT /register | server overhead (median of the pairs) | goal |")
    print("|---|---|---|---|---|")
    programs = (("hello", Single(HELLO)), ("program300", Single(three_hundred_lines())),
                ("vendored", Vendored()))
    for name, program in programs:
        cold, warm, same = measure(binary, go, name, program, repeats, colds)
        lines = program.lines
        for label, pairs in ((f"{name} ({lines} lines), cold build cache", cold),
                             (f"{name}, changed source, warm cache", warm)):
            alone = statistics.median(a for a, _ in pairs) * 1000
            server = statistics.median(s for _, s in pairs) * 1000
            print(f"| {label} ({len(pairs)} pairs) | {alone:.0f} ms | {server:.0f} ms | {overhead(pairs) * 100:+.1f}% | ≤ +5% |")
        what = "package (another archive)" if program.main else "source"
        print(f"| {name}, identical {what} again (median of {repeats}) | | {same * 1000:.2f} ms | no build | |")


if __name__ == "__main__":
    main()
