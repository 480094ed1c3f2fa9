//! The Go programs the tests register. Each is a complete `package main`, standard library
//! only; parameters arrive through the function's `env` or the query string.

/// GoLambda's README example.
pub const HELLO: &str = r#"package main

import "fmt"

func main() {
	fmt.Println("Hello, World!")
}
"#;

/// Prints a fixed line: `say("x")` answers `{"message":"x\n"}`.
pub fn say(text: &str) -> String {
    format!(
        r#"package main

import "fmt"

func main() {{
	fmt.Println({text:?})
}}
"#
    )
}

/// Copies stdin to stdout.
pub const ECHO: &str = r#"package main

import (
	"io"
	"os"
)

func main() {
	io.Copy(os.Stdout, os.Stdin)
}
"#;

/// Prints the method, sub-path, query and body it saw.
pub const REQUEST_INFO: &str = r#"package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	body, _ := io.ReadAll(os.Stdin)
	fmt.Printf("method=%s path_info=%q query=%q body=%q\n",
		os.Getenv("REQUEST_METHOD"), os.Getenv("PATH_INFO"), os.Getenv("QUERY_STRING"), body)
}
"#;

/// Prints `{"env": {...whole environment...}, "cgi": {...what net/http/cgi parsed...}}`.
pub const ENV_DUMP: &str = r#"package main

import (
	"encoding/json"
	"io"
	"net/http/cgi"
	"os"
	"strings"
)

func main() {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if i := strings.IndexByte(kv, '='); i >= 0 {
			env[kv[:i]] = kv[i+1:]
		}
	}
	parsed := map[string]string{}
	req, err := cgi.Request()
	if err != nil {
		parsed["error"] = err.Error()
	} else {
		body := []byte{}
		if req.Body != nil { // net/http/cgi leaves it nil without a CONTENT_LENGTH
			body, _ = io.ReadAll(req.Body)
		}
		parsed["method"] = req.Method
		parsed["path"] = req.URL.Path
		parsed["query"] = req.URL.RawQuery
		parsed["x_custom"] = req.Header.Get("X-Custom")
		parsed["body"] = string(body)
	}
	out, _ := json.Marshal(map[string]interface{}{"env": env, "cgi": parsed})
	os.Stdout.Write(out)
}
"#;

/// Prints its working directory, `$TMPDIR`, how many entries the directory had, and whether
/// it could write a file there.
pub const WORKDIR: &str = r#"package main

import (
	"encoding/json"
	"os"
)

func main() {
	wd, err := os.Getwd()
	if err != nil {
		wd = "error: " + err.Error()
	}
	entries, _ := os.ReadDir(".")
	werr := os.WriteFile("scratch.txt", []byte("scratch"), 0o644)
	out, _ := json.Marshal(map[string]interface{}{
		"cwd":      wd,
		"tmpdir":   os.Getenv("TMPDIR"),
		"entries":  len(entries),
		"write_ok": werr == nil,
	})
	os.Stdout.Write(out)
}
"#;

/// Sleeps `ms` milliseconds, then prints `woke`. If `$MARKER` is set, creates that file first
/// (so a test knows the run has started).
pub fn sleeper(ms: u64) -> String {
    format!(
        r#"package main

import (
	"fmt"
	"os"
	"time"
)

func main() {{
	if m := os.Getenv("MARKER"); m != "" {{
		os.WriteFile(m, []byte("started"), 0o666)
	}}
	time.Sleep({ms} * time.Millisecond)
	fmt.Println("woke")
}}
"#
    )
}

/// Appends `start <trigger>` to `$OUT`, sleeps `ms` milliseconds, appends `end`, prints `ok`.
pub fn appender(ms: u64) -> String {
    format!(
        r#"package main

import (
	"fmt"
	"os"
	"time"
)

func note(line string) {{
	f, err := os.OpenFile(os.Getenv("OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o666)
	if err != nil {{
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}}
	fmt.Fprintln(f, line)
	f.Close()
	// Runs of one function may each have a user of their own: let the next one append.
	os.Chmod(os.Getenv("OUT"), 0o666)
}}

func main() {{
	note("start " + os.Getenv("GOLAMBDA_TRIGGER"))
	time.Sleep({ms} * time.Millisecond)
	note("end")
	fmt.Println("ok")
}}
"#
    )
}

/// Starts `sleep 300` (in a new session of its own when `$SETSID` is set), writes
/// "<own pid> <child pid>" to `$PIDFILE`, then sleeps 2 minutes.
pub const SPAWN_AND_HANG: &str = r#"package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	bin := "/bin/sleep"
	if _, err := os.Stat(bin); err != nil {
		bin = "sleep"
	}
	cmd := exec.Command(bin, "300")
	if os.Getenv("SETSID") != "" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pids := fmt.Sprintf("%d %d\n", os.Getpid(), cmd.Process.Pid)
	tmp := os.Getenv("PIDFILE") + ".tmp"
	os.WriteFile(tmp, []byte(pids), 0o666)
	os.Rename(tmp, os.Getenv("PIDFILE"))
	time.Sleep(120 * time.Second)
}
"#;

/// `?n=N` writes N bytes of `a`; `?n=-1` writes forever.
pub const SPEW: &str = r#"package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

func main() {
	n, _ := strconv.Atoi(strings.TrimPrefix(os.Getenv("QUERY_STRING"), "n="))
	chunk := bytes.Repeat([]byte("a"), 32*1024)
	if n < 0 {
		for {
			if _, err := os.Stdout.Write(chunk); err != nil {
				os.Exit(1)
			}
		}
	}
	for n > 0 {
		k := len(chunk)
		if n < k {
			k = n
		}
		os.Stdout.Write(chunk[:k])
		n -= k
	}
}
"#;

/// `?exit`: stdout, stderr, exit 3. `?signal`: kills itself with SIGKILL. `?ok`: writes to both
/// streams and succeeds.
pub const FAILER: &str = r#"package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

func main() {
	switch os.Getenv("QUERY_STRING") {
	case "exit":
		fmt.Println("partial out")
		fmt.Fprintln(os.Stderr, "boom")
		os.Exit(3)
	case "signal":
		fmt.Println("about to die")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(10 * time.Second)
	default:
		fmt.Println("fine")
		fmt.Fprintln(os.Stderr, "noise")
	}
}
"#;

/// Does not compile: `fmt.Printx` is undefined.
pub const BROKEN: &str = r#"package main

import "fmt"

func main() {
	fmt.Printx("nope")
}
"#;

/// Writes bytes that are not UTF-8.
pub const NOT_UTF8: &str = r#"package main

import "os"

func main() {
	os.Stdout.Write([]byte{'a', 0xff, 0xfe, 'b', '\n'})
}
"#;

/// Prints `hi`, starts `sleep 30` in a session of its own that inherits stdout, writes the
/// sleeper's pid to `$PIDFILE`, and exits at once.
pub const LEAVE_BACKGROUND_HOLDING_STDOUT: &str = r#"package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	fmt.Println("hi")
	cmd := exec.Command("sleep", "30")
	cmd.Stdout = os.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.WriteFile(os.Getenv("PIDFILE"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o666)
}
"#;

/// A warm FastCGI responder (`"response": "fcgi"`) written with Go's `net/http/fcgi`. Each
/// answer is `201` JSON with `label`, the request as Go parsed it, the per-request and
/// per-process variables, a counter of requests this process served, and its pid.
/// `?do=exit` exits the process with status 3 mid-request; `?do=sleep&ms=N` sleeps first.
pub fn fcgi_server(label: &str) -> String {
    format!(
        r#"package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/fcgi"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

var served int64

func main() {{
	err := fcgi.Serve(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {{
		n := atomic.AddInt64(&served, 1)
		switch r.URL.Query().Get("do") {{
		case "exit":
			os.Exit(3)
		case "sleep":
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}}
		body, _ := io.ReadAll(r.Body)
		params := fcgi.ProcessEnv(r)
		out, _ := json.Marshal(map[string]interface{{}}{{
			"label":      {label:?},
			"count":      n,
			"pid":        os.Getpid(),
			"uid":        os.Getuid(),
			"method":     r.Method,
			"path":       r.URL.Path,
			"query":      r.URL.RawQuery,
			"body":       string(body),
			"x_custom":   r.Header.Get("X-Custom"),
			"auth":       r.Header.Get("Authorization"),
			"request_id": params["GOLAMBDA_REQUEST_ID"],
			"trigger":    params["GOLAMBDA_TRIGGER"],
			"gateway":    params["GATEWAY_INTERFACE"],
			"function":   os.Getenv("GOLAMBDA_FUNCTION"),
			"version":    os.Getenv("GOLAMBDA_VERSION"),
			"greeting":   os.Getenv("GREETING"),
		}})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Served-By", "go-fcgi")
		w.WriteHeader(http.StatusCreated)
		w.Write(out)
	}}))
	fmt.Fprintln(os.Stderr, "fcgi.Serve:", err)
	os.Exit(1)
}}
"#
    )
}
