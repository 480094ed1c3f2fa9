//! What survives: registry.json stays valid, failed registrations change nothing, restarts
//! restore without compiling, missing executables are rebuilt, and a crash mid-registration
//! loses nothing that was acknowledged.

use crate::harness::server::registration_body;
use crate::harness::{assert_error, eventually, go, http, Server};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn registry_json_is_valid_after_every_change() {
    let mut server = Server::new().start();
    server.register_ok("alpha", &go::say("a1"), json!({}));
    assert_eq!(server.registry_names(), vec!["alpha"]);
    server.register_ok("beta", &go::say("b1"), json!({}));
    assert_eq!(server.registry_names(), vec!["alpha", "beta"]);
    server.register_ok("alpha", &go::say("a2"), json!({}));
    assert_eq!(server.registry_names(), vec!["alpha", "beta"]);
    server.delete("/functions/beta").expect(204);
    assert_eq!(server.registry_names(), vec!["alpha"]);
    server.register("alpha", go::BROKEN, json!({})).expect(422);
    assert_eq!(server.registry_names(), vec!["alpha"]);

    // what is on disk is what the API said
    server.restart();
    assert_eq!(server.metadata("alpha")["version"], 2);
    assert_eq!(server.get("/alpha").message(), "a2\n");
    server.get("/functions/beta").expect(404);
    assert_eq!(server.registry_names(), vec!["alpha"]);
}

#[test]
fn a_failed_compilation_changes_nothing() {
    let server = Server::new().start();
    let first = server.register_ok("keep", go::HELLO, json!({}));
    let registry_before = std::fs::read(server.data_dir().join("registry/registry.json")).unwrap();
    let files_before = server.stored_files();

    let failed = server.register("keep", go::BROKEN, json!({}));
    let body = assert_error(&failed, 422, &[]);
    assert_eq!(body["error"], "compilation failed", "{body}");
    assert!(
        body["details"]
            .as_str()
            .is_some_and(|d| d.contains("Printx")),
        "details should carry the compiler output: {body}"
    );
    let failed_new = server.register("newbie", go::BROKEN, json!({}));
    assert_error(&failed_new, 422, &[]);

    assert_eq!(server.metadata("keep"), first, "metadata changed");
    assert_eq!(
        server.get("/keep").message(),
        "Hello, World!\n",
        "the old version must keep serving"
    );
    server.get("/functions/newbie").expect(404);
    server.get("/newbie").expect(404);
    assert_eq!(
        std::fs::read(server.data_dir().join("registry/registry.json")).unwrap(),
        registry_before,
        "registry.json changed"
    );
    assert_eq!(server.stored_files(), files_before, "stored files changed");
}

fn starts(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("start"))
        .count()
}

/// Metadata without the fields that legitimately move with time.
fn stable(meta: &Value) -> Value {
    let mut meta = meta.clone();
    if let Some(object) = meta.as_object_mut() {
        object.remove("next_run");
    }
    meta
}

#[test]
fn restart_restores_functions_and_schedules_without_compiling() {
    let mut server = Server::new().start();
    let out = server.io_path("ticks");
    server.register_ok("hello", go::HELLO, json!({}));
    server.register_ok(
        "tick",
        &go::appender(0),
        json!({"trigger": "@every 1s", "env": {"OUT": out.display().to_string()}}),
    );
    assert!(
        eventually(Duration::from_secs(6), || starts(&out) > 0),
        "tick never fired"
    );
    let before: Vec<Value> = server
        .get("/functions")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(stable)
        .collect();

    server.stop();
    let fired_before_restart = starts(&out);
    // No Go toolchain at all now: anything that answers was not recompiled.
    server.restart_with(|b| b.go("/nonexistent/go"));

    server.expect_log("restored hello version 1", Duration::from_secs(5));
    server.expect_log("restored tick version 1", Duration::from_secs(5));
    assert_eq!(server.get("/hello").message(), "Hello, World!\n");
    let after: Vec<Value> = server
        .get("/functions")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(stable)
        .collect();
    assert_eq!(after, before, "metadata changed across the restart");
    assert!(
        !server.metadata("tick")["next_run"].is_null(),
        "schedule not restored"
    );
    assert!(
        eventually(Duration::from_secs(6), || starts(&out)
            > fired_before_restart),
        "the cron schedule did not fire after the restart"
    );
    // and the toolchain really is unavailable in this run
    assert_error(&server.register("other", go::HELLO, json!({})), 503, &[]);
}

#[test]
fn a_missing_executable_is_rebuilt_from_source_on_restart() {
    let mut server = Server::new().start();
    server.register_ok("hello", go::HELLO, json!({}));
    server.stop();
    let exe = server.version_file("hello", 1, "executable");
    let plugins = server.data_dir().join("plugins/hello");
    for entry in std::fs::read_dir(&plugins).expect("plugins/hello") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    server.restart();
    assert_eq!(server.get("/hello").message(), "Hello, World!\n");
    assert!(exe.is_file(), "{} was not rebuilt", exe.display());
}

#[test]
fn an_executable_of_the_wrong_size_is_rebuilt_on_restart() {
    let mut server = Server::new().start();
    server.register_ok("hello", go::HELLO, json!({}));
    server.stop();
    let exe = server.version_file("hello", 1, "executable");
    let size = std::fs::metadata(&exe).expect("the executable").len();
    let file = std::fs::OpenOptions::new().write(true).open(&exe).unwrap();
    file.set_len(size / 2).unwrap();
    drop(file);
    server.restart();
    assert_eq!(server.get("/hello").message(), "Hello, World!\n");
}

#[test]
fn kill_9_during_registrations_loses_nothing_acknowledged() {
    let mut server = Server::new().start();
    let port = server.port();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let crashed = Arc::new(AtomicBool::new(false));

    let workers: Vec<_> = (0..3)
        .map(|worker| {
            let acknowledged = Arc::clone(&acknowledged);
            let crashed = Arc::clone(&crashed);
            std::thread::spawn(move || {
                for i in 0..40 {
                    if crashed.load(Ordering::SeqCst) {
                        return;
                    }
                    let name = format!("f{worker}-{i}");
                    let body = registration_body(&name, &go::say(&name), json!({})).to_string();
                    match http::request(
                        port,
                        "PUT",
                        "/register",
                        &[],
                        http::Body::Fixed(body.as_bytes()),
                    ) {
                        Ok(r) if r.status == 201 || r.status == 200 => {
                            acknowledged.lock().unwrap().push(name)
                        }
                        Ok(r) => panic!("registering {name}: {} {}", r.status, r.text()),
                        Err(_) => return, // the server died under this request
                    }
                }
            })
        })
        .collect();

    assert!(
        eventually(Duration::from_secs(90), || acknowledged
            .lock()
            .unwrap()
            .len()
            >= 5),
        "registrations too slow"
    );
    server.kill9();
    crashed.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().expect("a registration thread panicked");
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    server.restart();
    let listed = server.registry_names(); // panics unless registry.json parses
    for name in &acknowledged {
        assert!(
            listed.contains(name),
            "{name} was acknowledged but is not in registry.json"
        );
        assert_eq!(server.metadata(name)["version"], 1);
        assert_eq!(
            server.get(&format!("/{name}")).message(),
            format!("{name}\n")
        );
    }
    // whatever else made it to disk must be whole
    let api: Vec<Value> = server.get("/functions").json().as_array().unwrap().clone();
    assert_eq!(api.len(), listed.len(), "API and registry.json disagree");
    for meta in api {
        let name = meta["name"].as_str().unwrap();
        assert_eq!(
            server.get(&format!("/{name}")).message(),
            format!("{name}\n")
        );
    }
}

/// Starts the server binary on `server`'s data dir (stopped) and expects it to refuse:
/// a non-zero exit within 30 s and a message holding every one of `needles`.
fn refuses_to_start(server: &Server, needles: &[&str]) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_golambda"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir())
        .args(["--run-uids", "399970-399979"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let mut exited = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            exited = child.try_wait().ok().flatten();
            exited.is_some()
        }),
        "the server started on a damaged registry"
    );
    let _ = child.kill();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(!exited.expect("exited").success(), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
}

#[test]
fn a_damaged_whole_journal_record_stops_the_start_instead_of_losing_a_function() {
    let mut server = Server::new().start();
    server.register_ok("kept", &go::say("k"), json!({}));
    server.register_ok("acknowledged", &go::say("a"), json!({}));
    server.kill9();
    let journal = server.data_dir().join("registry/registry.journal");
    let mut bytes = std::fs::read(&journal).expect("journal");
    assert!(
        bytes.ends_with(b"\n"),
        "both registrations are journal records"
    );
    // One byte of the last record changed, its line break intact: not a torn write.
    let at = bytes.len() - 10;
    bytes[at] ^= 0x20;
    std::fs::write(&journal, &bytes).expect("damage");
    refuses_to_start(&server, &["registry.journal", "damaged", "line 2"]);
    // Torn (no line break): dropped with a warning, and the start goes on.
    bytes.truncate(at);
    std::fs::write(&journal, &bytes).expect("tear");
    server.restart();
    server.get("/kept").expect(200);
    server.get("/functions/acknowledged").expect(404);
}

#[test]
fn a_lost_registry_json_stops_the_start_while_sources_are_on_disk() {
    let mut server = Server::new().start();
    server.register_ok("precious", &go::say("p"), json!({}));
    // Folded into registry.json at the restart; then registry.json is lost.
    server.restart();
    server.stop();
    std::fs::remove_file(server.data_dir().join("registry/registry.json")).expect("rm");
    refuses_to_start(&server, &["registry.json", "precious", "backup"]);
}

#[test]
fn a_journal_record_carries_only_its_change() {
    let server = Server::new().start();
    // 210 KiB of env: under the 256 KiB bound, so each version is large.
    let value = "v".repeat(30 * 1024);
    let big: serde_json::Map<String, Value> =
        (0..7).map(|i| (format!("BIG{i}"), json!(value))).collect();
    for i in 0..12 {
        server.register_ok(
            "big",
            &go::say(&format!("v{i}")),
            json!({"env": big.clone()}),
        );
    }
    let journal = server.data_dir().join("registry/registry.journal");
    let size = std::fs::metadata(&journal).expect("journal").len();
    // Twelve records of one version each; repeating the kept versions would be 6x more.
    assert!(size < 12 * 230 * 1024, "the journal holds {size} bytes");
    assert_eq!(server.get("/big").message(), "v11\n");
    // What no process environment could carry is refused at registration.
    let huge = "h".repeat(30 * 1024);
    let env: serde_json::Map<String, Value> =
        (0..12).map(|i| (format!("K{i}"), json!(huge))).collect();
    let refused = server.register("big", &go::say("x"), json!({"env": env}));
    assert_error(&refused, 400, &["env", "256 KiB"]);
    assert_eq!(server.metadata("big")["version"], 12);
}

#[test]
fn a_full_disk_is_507_with_its_cause_not_a_compilation_failure() {
    if !crate::harness::is_root() {
        return;
    }
    let mut server = Server::new().start();
    server.register_ok("hello", go::HELLO, json!({}));
    server.stop();
    // The data dir moves onto a 32 MiB file system of its own.
    let data = server.data_dir().to_path_buf();
    let saved = data.with_file_name("data-saved");
    std::fs::rename(&data, &saved).expect("set aside");
    std::fs::create_dir(&data).expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"])
        .arg(&data)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        return;
    }
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", saved.display()))
        .arg(&data)
        .status()
        .is_ok_and(|s| s.success());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(copied, "copying the data dir");
        server.restart();
        // Fill it but for 64 KiB: a build's executable no longer fits.
        let free = {
            let out = std::process::Command::new("df")
                .args(["--output=avail", "-B1"])
                .arg(&data)
                .output()
                .expect("df");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .and_then(|l| l.trim().parse::<u64>().ok())
                .expect("free bytes")
        };
        let filler = std::fs::File::create(data.join("filler")).expect("filler");
        filler.set_len(0).expect("len");
        use std::io::Write;
        let mut filler = std::io::BufWriter::new(filler);
        let block = vec![0u8; 64 * 1024];
        for _ in 0..(free.saturating_sub(64 * 1024) / block.len() as u64) {
            if filler.write_all(&block).is_err() {
                break;
            }
        }
        let _ = filler.flush();
        let answer = server.register("other", &go::say("other"), json!({}));
        assert_error(&answer, 507, &["disk is full"]);
        server.get("/functions/other").expect(404);
        assert_eq!(server.get("/hello").message(), "Hello, World!\n");
        server.stop();
    }));
    // Nothing may hold the file system open when it is unmounted.
    server.kill9();
    let _ = std::process::Command::new("umount").arg(&data).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
