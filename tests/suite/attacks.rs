//! Attacks a function can try when the server runs as root (as CI does): each run executes
//! as an unprivileged user of its own, so it cannot read the server's data, other functions
//! or the server's environment, cannot signal the server, and nothing it starts survives it.
//! On a non-root machine these tests return early: runs then share the server's user.

use crate::harness::server::has_memory_cgroups;
use crate::harness::{assert_error, go, is_root, Server};
use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

/// Pids of processes whose uid is in `first..=last`.
fn processes_of(first: u32, last: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let uid = e.metadata().ok()?.uid();
                    ((first..=last).contains(&uid) && !crate::harness::process_gone(pid))
                        .then_some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Registers and runs `whoami`, checks that the run's uid is in the server's `--run-uids`,
/// and returns what it printed and that range.
fn whoami(server: &Server) -> (Value, u32, u32) {
    server.register_ok("whoami", WHOAMI, json!({}));
    let me: Value = serde_json::from_str(&server.get("/whoami").message()).expect("json");
    let uid = me["uid"].as_u64().expect("uid");
    let (first, last) = server.run_uid_range();
    assert!((u64::from(first)..=u64::from(last)).contains(&uid), "{me}");
    (me, first, last)
}

const WHOAMI: &str = r#"package main

import (
	"fmt"
	"os"
)

func main() { fmt.Printf(`{"uid":%d,"gid":%d}`, os.Getuid(), os.Getgid()) }
"#;

const PROBE: &str = r#"package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	for _, path := range strings.Split(os.Getenv("TARGETS"), ",") {
		if _, err := os.ReadFile(path); err != nil {
			fmt.Printf("denied %s\n", path)
		} else {
			fmt.Printf("READ %s\n", path)
		}
	}
	pid := 0
	fmt.Sscan(os.Getenv("SERVER_PID"), &pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		fmt.Println("signal denied")
	} else {
		fmt.Println("SIGNALLED")
	}
	os.Symlink("/", "root-link")
	os.Symlink(os.Getenv("REGISTRY"), "registry-link")
}
"#;

#[test]
fn runs_execute_as_unprivileged_users_of_their_own() {
    if !is_root() {
        return;
    }
    let server = Server::new().start();
    let (me, _, _) = whoami(&server);
    assert_eq!(me["gid"], me["uid"], "{me}");
}

#[test]
fn a_function_cannot_read_the_server_data_or_signal_the_server() {
    if !is_root() {
        return;
    }
    let server = Server::new().start();
    server.register_ok("victim", go::HELLO, json!({"secrets": {"TOKEN": "v1ct1m"}}));
    let data = server.data_dir();
    let registry = data.join("registry/registry.json");
    let targets = [
        registry.clone(),
        server.version_file("victim", 1, "source"),
        server.version_file("victim", 1, "executable"),
        server.version_file("victim", 1, "secrets"),
        std::path::PathBuf::from(format!("/proc/{}/environ", server.pid())),
    ];
    let list: Vec<String> = targets.iter().map(|p| p.display().to_string()).collect();
    server.register_ok(
        "probe",
        PROBE,
        json!({"env": {
            "TARGETS": list.join(","),
            "SERVER_PID": server.pid().to_string(),
            "REGISTRY": registry.display().to_string(),
        }}),
    );
    let report = server.get("/probe").message();
    for target in &list {
        assert!(
            report.contains(&format!("denied {target}")),
            "{target}:\n{report}"
        );
    }
    assert!(report.contains("signal denied"), "{report}");
    // The symlinks it left in its working directory were removed, not followed.
    assert!(registry.is_file(), "the registry survived the clean-up");
    assert!(std::path::Path::new("/etc/passwd").is_file());
    server.get("/").expect(200);
    assert_eq!(server.get("/victim").message(), "Hello, World!\n");
}

const FORK_BOMB: &str = r#"package main

import (
	"fmt"
	"os/exec"
)

func main() {
	started := 0
	for i := 0; i < 2000; i++ {
		if err := exec.Command("sleep", "300").Start(); err != nil {
			break
		}
		started++
	}
	fmt.Println(started)
}
"#;

#[test]
fn a_fork_bomb_is_bounded_and_leaves_nothing() {
    if !is_root() {
        return;
    }
    let server = Server::new().start();
    let (_, first, last) = whoami(&server);
    server.register_ok("bomb", FORK_BOMB, json!({"timeout": "10s"}));
    let answer = server.get("/bomb");
    answer.expect(200);
    let started: u32 = answer.message().trim().parse().expect("a count");
    assert!(started < 200, "{started} processes started");
    assert!(
        crate::harness::eventually(std::time::Duration::from_secs(5), || processes_of(
            first, last
        )
        .is_empty()),
        "left behind: {:?}",
        processes_of(first, last)
    );
}

const DAEMON: &str = r#"package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// sessionOf returns the command name and session of a process, from its stat file.
func sessionOf(pid string) (string, string) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", ""
	}
	text := string(stat)
	open, end := strings.Index(text, "("), strings.LastIndex(text, ")")
	if open < 0 || end < open {
		return "", ""
	}
	// After "pid (comm) ": state ppid pgrp session ...
	fields := strings.Fields(text[end+1:])
	if len(fields) < 4 {
		return "", ""
	}
	return text[open+1 : end], fields[3]
}

// escaped says whether a sleep of this uid runs in a session other than ours: the daemon
// has left the run's process group, and only the clean-up by uid can end it.
func escaped() bool {
	_, own := sessionOf("self")
	entries, _ := os.ReadDir("/proc")
	for _, entry := range entries {
		info, err := entry.Info()
		if err != nil || info.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			continue
		}
		if comm, session := sessionOf(entry.Name()); comm == "sleep" && session != own {
			return true
		}
	}
	return false
}

func main() {
	// The shell forks a child into a session of its own and exits: a classic daemon.
	err := exec.Command("sh", "-c", "setsid sleep 300 >/dev/null 2>&1 < /dev/null &").Run()
	// Answer only once it has left: the run's own process-group kill must not reach it.
	for i := 0; i < 500 && !escaped(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("daemon started", err == nil, escaped())
}
"#;

#[test]
fn a_double_forking_daemon_does_not_survive_its_run() {
    if !is_root() {
        return;
    }
    let server = Server::new().start();
    let (_, first, last) = whoami(&server);
    server.register_ok("daemon", DAEMON, json!({}));
    assert_eq!(
        server.get("/daemon").message(),
        "daemon started true true\n"
    );
    assert!(
        crate::harness::eventually(std::time::Duration::from_secs(5), || processes_of(
            first, last
        )
        .is_empty()),
        "the daemon survived: {:?}",
        processes_of(first, last)
    );
}

#[test]
fn cgo_directives_never_run_at_build_time() {
    let server = Server::new().start();
    let marker = server.io_path("cgo-ran");
    let source = format!(
        r#"package main

// #cgo CFLAGS: -DX=1
// #cgo LDFLAGS: -Wl,--version
// static void hello(void) {{ }}
import "C"

//go:generate touch {}

func main() {{ C.hello() }}
"#,
        marker.display()
    );
    let answer = server.register("cgo", &source, json!({}));
    assert_error(&answer, 422, &["compilation failed"]);
    assert!(!marker.exists(), "a build step ran");
    server.get("/functions/cgo").expect(404);
}

#[test]
fn builds_run_as_an_unprivileged_user_and_executables_belong_to_the_server() {
    if !is_root() {
        return;
    }
    let server = Server::new().system_go().start();
    server.register_ok("hello", go::HELLO, json!({}));
    assert_built_confined(&server, &server.data_dir().join("cache"));
}

/// `hello` was built by a run uid, with its Go cache in `area`, and its executable is the
/// server's.
#[track_caller]
fn assert_built_confined(server: &Server, area: &std::path::Path) {
    assert_eq!(server.get("/hello").message(), "Hello, World!\n");
    let cache_owner = std::fs::metadata(area.join("go-build"))
        .expect("the build cache")
        .uid();
    let (first, last) = server.run_uid_range();
    assert!(
        (first..=last).contains(&cache_owner),
        "the build cache belongs to uid {cache_owner}, not one of {first}-{last}"
    );
    let exe = std::fs::metadata(server.version_file("hello", 1, "executable")).expect("exe");
    assert_eq!(exe.uid(), 0, "the executable belongs to the server");
}

#[test]
fn a_data_dir_closed_to_other_users_keeps_builds_confined() {
    if !is_root() {
        return;
    }
    let server = Server::new().system_go().closed_parent().start();
    server.register_ok("hello", go::HELLO, json!({}));
    let log = server.log();
    assert!(
        !log.contains("builds run as the server's user"),
        "a closed data dir weakened the build confinement:\n{log}"
    );
    let area = log
        .lines()
        .find_map(|line| line.split_once("is closed to other users: builds run as uid "))
        .and_then(|(_, rest)| rest.split_once(" in "))
        .map(|(_, area)| std::path::PathBuf::from(area.trim()))
        .unwrap_or_else(|| panic!("no line names the build area:\n{log}"));
    assert!(!area.starts_with(server.data_dir()), "{}", area.display());
    let confined = std::panic::catch_unwind(|| assert_built_confined(&server, &area));
    let _ = std::fs::remove_dir_all(&area);
    if let Err(failure) = confined {
        std::panic::resume_unwind(failure);
    }
}

const TREE_HOG: &str = r#"package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"
)

func main() {
	if os.Getenv("CHILD") != "" {
		b := make([]byte, 100<<20)
		for i := range b {
			b[i] = byte(i)
		}
		time.Sleep(1500 * time.Millisecond)
		fmt.Println(len(b))
		return
	}
	var children []*exec.Cmd
	for i := 0; i < 4; i++ {
		// Its own file is out of reach by path (plugins/ is the server's); /proc/self/exe is not.
		c := exec.Command("/proc/self/exe")
		c.Env = append(os.Environ(), "CHILD=1")
		c.Start()
		children = append(children, c)
	}
	finished := 0
	for _, c := range children {
		if c.Wait() == nil {
			finished++
		}
	}
	fmt.Printf("%d of 4 children finished\n", finished)
}
"#;

#[test]
fn memory_is_limited_for_the_whole_tree_where_cgroups_exist() {
    if !has_memory_cgroups() {
        return;
    }
    let server = Server::new().start();
    // Each child stays under the per-process limit; together they do not.
    server.register_ok(
        "tree",
        TREE_HOG,
        json!({"memory": "256MiB", "timeout": "20s"}),
    );
    let answer = server.get("/tree");
    let text = answer.text();
    assert!(
        text.contains("children finished") && !text.contains("4 of 4 children finished"),
        "400 MiB of children ran under a 256 MiB limit: {text}"
    );
    // With room for all of them, they all finish.
    server.register_ok(
        "roomy",
        TREE_HOG,
        json!({"memory": "1GiB", "timeout": "20s"}),
    );
    assert_eq!(server.get("/roomy").message(), "4 of 4 children finished\n");
    // The groups of the run uids were made for this server; stopped, it leaves none.
    let made = server.memory_groups();
    assert!(!made.is_empty(), "no memory group was made for the runs");
    let mut server = server;
    server.stop();
    for group in made {
        assert!(
            !group.exists(),
            "{} is left after the server stopped",
            group.display()
        );
    }
}

#[test]
fn runs_go_on_when_a_uid_group_is_removed_under_the_server() {
    if !has_memory_cgroups() {
        return;
    }
    let server = Server::new().start();
    whoami(&server);
    // An operator (or another tool) removes the idle groups the server keeps open.
    let groups = server.memory_groups();
    assert!(!groups.is_empty(), "no group was made for the run");
    for dir in &groups {
        assert!(
            crate::harness::eventually(std::time::Duration::from_secs(5), || {
                std::fs::remove_dir(dir).is_ok()
            }),
            "{} stayed busy",
            dir.display()
        );
    }
    // Every uid that had a group runs again, each in a group made afresh.
    for _ in 0..groups.len() + 1 {
        server.get("/whoami").expect(200);
    }
    assert!(
        groups.iter().any(|dir| dir.is_dir()),
        "no group was made again"
    );
}

const STASH: &str = r#"package main

import (
	"fmt"
	"os"
)

// Leaves a file in every shared scratch folder, named after the marker in its env.
func main() {
	for _, dir := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		if err := os.WriteFile(dir+"/"+os.Getenv("MARK"), []byte("secret"), 0644); err != nil {
			fmt.Println("write", dir, err)
			return
		}
	}
	fmt.Println("stashed")
}
"#;

const SNOOP: &str = r#"package main

import (
	"fmt"
	"os"
)

// Reports which of the stash's files it can see.
func main() {
	seen := 0
	for _, dir := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		if _, err := os.Stat(dir + "/" + os.Getenv("MARK")); err == nil {
			seen++
		}
	}
	fmt.Println("seen", seen)
}
"#;

#[test]
fn files_left_in_shared_scratch_folders_reach_no_other_run() {
    if !is_root() {
        return;
    }
    let server = Server::new().start();
    let mark = format!("golambda-stash-{}", std::process::id());
    server.register_ok("stash", STASH, json!({"env": {"MARK": mark}}));
    server.register_ok("snoop", SNOOP, json!({"env": {"MARK": mark}}));
    assert!(server.get("/stash").message().contains("stashed"));
    // Every later run, whatever uid it gets, finds nothing, and neither does the host.
    for _ in 0..3 {
        assert_eq!(server.get("/snoop").message().trim(), "seen 0");
        assert_eq!(server.get("/stash").message().trim(), "stashed");
    }
    for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
        let path = std::path::Path::new(dir).join(&mark);
        assert!(!path.exists(), "{} is visible on the host", path.display());
    }
}

/// Prints what it can read of `/proc/$SERVER_PID/cmdline` and `…/environ`.
const CREDENTIAL_THIEF: &str = r#"package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	for _, part := range []string{"cmdline", "environ"} {
		data, err := os.ReadFile("/proc/" + os.Getenv("SERVER_PID") + "/" + part)
		if err != nil {
			fmt.Printf("%s: denied\n", part)
			continue
		}
		fmt.Printf("%s: %s\n", part, strings.ReplaceAll(string(data), "\x00", " "))
	}
}
"#;

/// Registers the thief with `bearer` and runs it.
fn steal(server: &Server, bearer: &str) -> String {
    let body = crate::harness::server::registration_body(
        "thief",
        CREDENTIAL_THIEF,
        json!({"env": {"SERVER_PID": server.pid().to_string()}}),
    );
    let auth = [("Authorization", bearer)];
    server
        .request("PUT", "/register", &auth, body.to_string().as_bytes())
        .expect(201);
    server.get("/thief").message()
}

#[test]
fn no_run_reads_a_credential_of_the_server() {
    if !is_root() {
        return;
    }
    // Given on the command line, as the README once showed.
    let server = Server::new()
        .arg("--token")
        .arg("cmdline-token-4711")
        .arg("--jwt-secret")
        .arg("cmdline-jwt-4712")
        .start();
    let seen = steal(&server, "Bearer cmdline-token-4711");
    assert!(seen.contains("cmdline: "), "{seen}");
    for secret in ["cmdline-token-4711", "cmdline-jwt-4712"] {
        assert!(!seen.contains(secret), "a run read {secret}: {seen}");
    }
    server.expect_log("given on the command line", Duration::ZERO);
    // From a file, and from the environment.
    let dir = crate::harness::tempdir::TempDir::new();
    let file = dir.path().join("token");
    std::fs::write(&file, "file-token-4713\n").expect("token file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let server = Server::new()
        .arg("--token-file")
        .arg(file.display().to_string())
        .env("GOLAMBDA_JWT_SECRET", "env-jwt-4714")
        .start();
    assert_error(
        &server.request(
            "GET",
            "/functions",
            &[("Authorization", "Bearer file-token")],
            b"",
        ),
        401,
        &[],
    );
    let seen = steal(&server, "Bearer file-token-4713");
    for secret in ["file-token-4713", "env-jwt-4714"] {
        assert!(!seen.contains(secret), "a run read {secret}: {seen}");
    }
    assert_eq!(server.log_count("given on the command line"), 0);
}

/// Starts a child (itself, with `CHILD=1`) that sleeps in a session of its own, writes the
/// child's pid to `PIDFILE`, then waits until the file `GO` exists and exits.
const STAY_BEHIND: &str = r#"package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("CHILD") == "1" {
		time.Sleep(10 * time.Minute)
		return
	}
	child := exec.Command("/proc/self/exe")
	child.Env = append(os.Environ(), "CHILD=1")
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		fmt.Println("cannot start:", err)
		return
	}
	os.WriteFile(os.Getenv("PIDFILE"), []byte(fmt.Sprint(child.Process.Pid)), 0o644)
	for i := 0; i < 3000; i++ {
		if _, err := os.Stat(os.Getenv("GO")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("left")
}
"#;

#[test]
fn a_uid_whose_processes_cannot_be_killed_comes_back_once_they_are_gone() {
    // A frozen process (cgroup v1 freezer) ignores SIGKILL until thawed, as one stuck in
    // the kernel (an fsync, say) does until the kernel lets go.
    let freezer = std::path::Path::new("/sys/fs/cgroup/freezer");
    if !is_root() || !freezer.join("tasks").is_file() {
        return;
    }
    // One run user only, apart from every other test server's.
    let server = Server::new().arg("--run-uids").arg("399901-399901").start();
    let pidfile = server.io_path("child.pid");
    let go = server.io_path("go");
    server.register_ok(
        "stay",
        STAY_BEHIND,
        json!({"env": {"PIDFILE": pidfile.display().to_string(), "GO": go.display().to_string()}}),
    );
    server.register_ok("hello", go::HELLO, json!({}));
    let port = server.port();
    let run = std::thread::spawn(move || {
        crate::harness::http::request(
            port,
            "GET",
            "/stay",
            &[],
            crate::harness::http::Body::Fixed(b""),
        )
    });
    assert!(crate::harness::eventually(Duration::from_secs(30), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|p| !p.is_empty())
    }));
    let pid = std::fs::read_to_string(&pidfile).expect("pid");
    let group = freezer.join(format!("golambda-test-{}", std::process::id()));
    std::fs::create_dir_all(&group).expect("freezer group");
    let thaw = |group: &std::path::Path| {
        let _ = std::fs::write(group.join("freezer.state"), "THAWED");
    };
    std::fs::write(group.join("tasks"), &pid).expect("into the freezer");
    std::fs::write(group.join("freezer.state"), "FROZEN").expect("freeze");
    std::fs::write(&go, "").expect("go");
    let answer = run.join().expect("run thread").expect("answer");
    assert_eq!(answer.message(), "left\n");
    // Its child cannot be killed: the only uid is set aside, and the answer says so.
    let refused = server.get("/hello");
    thaw(&group);
    assert_error(
        &refused,
        503,
        &["run users", "--run-uids", "could not be killed"],
    );
    // Thawed, the child dies of the SIGKILL it was sent: the uid comes back.
    let back = crate::harness::eventually(Duration::from_secs(10), || {
        server.get("/hello").status == 200
    });
    let _ = crate::harness::eventually(Duration::from_secs(5), || {
        std::fs::remove_dir(&group).is_ok()
    });
    assert!(back, "the uid never came back: {}", server.log());
}
