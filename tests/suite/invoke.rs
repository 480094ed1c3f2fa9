//! Running a function: methods, sub-paths, stdin, CGI variables, the environment, the
//! working dir, time limits, output limits, and failures.

use crate::harness::{assert_error, eventually, go, process_gone, PidReaper, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

#[test]
fn every_method_and_any_sub_path_invokes_the_function() {
    let server = Server::new().start();
    server.register_ok("req", go::REQUEST_INFO, json!({}));

    assert_eq!(
        server.get("/req").message(),
        "method=GET path_info=\"\" query=\"\" body=\"\"\n"
    );
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let answer = server.request(method, "/req", &[], b"payload");
        assert_eq!(
            answer.message(),
            format!("method={method} path_info=\"\" query=\"\" body=\"payload\"\n")
        );
    }
    assert_eq!(
        server.get("/req/a/b?x=1&y=two").message(),
        "method=GET path_info=\"/a/b\" query=\"x=1&y=two\" body=\"\"\n"
    );
    assert_eq!(
        server.post("/req/deeper/still/", "b").message(),
        "method=POST path_info=\"/deeper/still/\" query=\"\" body=\"b\"\n"
    );
}

#[test]
fn the_request_body_is_the_function_stdin() {
    let server = Server::new().start();
    server.register_ok("echo", go::ECHO, json!({}));
    assert_eq!(server.get("/echo").message(), "");
    assert_eq!(
        server.post("/echo", "hello body\n").message(),
        "hello body\n"
    );
    // larger than a pipe buffer, to catch a server that writes stdin before reading stdout
    let big: String = (0..(1 << 20))
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let echoed = server.post("/echo", &big).message();
    assert_eq!(echoed.len(), big.len());
    assert!(echoed == big, "1 MiB body did not come back intact");
    // a chunked body (no Content-Length) arrives whole as well
    let chunked = server.request_chunked("POST", "/echo", &big.as_bytes()[..100_000], 7_000);
    assert!(
        chunked.message() == big[..100_000],
        "chunked body did not come back intact"
    );
}

fn env_of(answer: &crate::harness::Response) -> (Value, Value) {
    let dump: Value = serde_json::from_str(&answer.message()).expect("function printed JSON");
    (dump["env"].clone(), dump["cgi"].clone())
}

#[test]
fn cgi_meta_variables_describe_the_request() {
    let server = Server::new().start();
    server.register_ok("cgi", go::ENV_DUMP, json!({}));
    let body = b"a=1&b=2";
    let answer = server.request(
        "POST",
        "/cgi/x/y?q=1&r=s",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Custom", "custom value"),
            ("Authorization", "Bearer do-not-leak"),
        ],
        body,
    );
    let (env, cgi) = env_of(&answer);
    let var = |name: &str| env[name].as_str().map(str::to_string);
    let port = server.port().to_string();
    let expected = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "POST"),
        ("QUERY_STRING", "q=1&r=s"),
        ("PATH_INFO", "/x/y"),
        ("SCRIPT_NAME", "/cgi"),
        ("SERVER_PORT", port.as_str()),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
        ("CONTENT_LENGTH", "7"),
        ("HTTP_X_CUSTOM", "custom value"),
        ("GOLAMBDA_FUNCTION", "cgi"),
        ("GOLAMBDA_VERSION", "1"),
        ("GOLAMBDA_TRIGGER", "http"),
    ];
    for (name, value) in expected {
        assert_eq!(var(name).as_deref(), Some(value), "{name} in {env}");
    }
    for name in [
        "SERVER_NAME",
        "SERVER_SOFTWARE",
        "GOLAMBDA_REQUEST_ID",
        "HTTP_HOST",
    ] {
        assert!(
            var(name).is_some_and(|v| !v.is_empty()),
            "{name} missing or empty in {env}"
        );
    }
    assert!(
        env.get("HTTP_AUTHORIZATION").is_none(),
        "the Authorization header must not reach the function: {env}"
    );
    assert!(
        !env.to_string().contains("do-not-leak"),
        "the credential leaked into the environment: {env}"
    );

    // Go's own net/http/cgi understands it
    assert!(
        cgi.get("error").is_none(),
        "net/http/cgi refused the request: {cgi}"
    );
    assert_eq!(cgi["method"], "POST", "{cgi}");
    assert_eq!(cgi["path"], "/cgi/x/y", "{cgi}");
    assert_eq!(cgi["query"], "q=1&r=s", "{cgi}");
    assert_eq!(cgi["x_custom"], "custom value", "{cgi}");
    assert_eq!(cgi["body"], "a=1&b=2", "{cgi}");

    // a GET at /{name} has an empty PATH_INFO, and the request id differs per run
    let (get_env, _) = env_of(&server.get("/cgi"));
    assert_eq!(get_env["REQUEST_METHOD"], "GET");
    assert_eq!(get_env["PATH_INFO"].as_str().unwrap_or(""), "", "{get_env}");
    assert_ne!(get_env["GOLAMBDA_REQUEST_ID"], env["GOLAMBDA_REQUEST_ID"]);
}

#[test]
fn the_environment_is_built_from_scratch() {
    let server = Server::new()
        .env("GOLAMBDA_TEST_SECRET_LEAK", "xyz")
        .env("FOO", "bar")
        .start();
    server.register_ok("envy", go::ENV_DUMP, json!({"env": {"GREETING": "hi"}}));
    let (env, _) = env_of(&server.get("/envy"));
    let map = env.as_object().expect("env object");

    assert!(map.get("FOO").is_none(), "server env FOO leaked: {env}");
    assert!(
        map.get("GOLAMBDA_TEST_SECRET_LEAK").is_none(),
        "server env leaked: {env}"
    );
    assert!(
        !env.to_string().contains("xyz"),
        "a server env value leaked: {env}"
    );
    assert_eq!(env["GREETING"], "hi", "the function's own env: {env}");
    for name in ["PATH", "HOME", "TMPDIR", "LANG"] {
        assert!(map.contains_key(name), "{name} missing: {env}");
    }
    // the test runner's variables (cargo's among them) are the server's, not the function's
    assert!(
        !map.keys()
            .any(|k| k.starts_with("CARGO") || k.starts_with("RUST")),
        "the server's inherited environment leaked: {env}"
    );
}

#[test]
fn the_environment_holds_only_the_documented_variables() {
    let server = Server::new().start();
    server.register_ok("envy", go::ENV_DUMP, json!({"env": {"GREETING": "hi"}}));
    let (env, _) =
        env_of(&server.request("POST", "/envy/p?q", &[("Content-Type", "text/plain")], b"x"));
    let map = env.as_object().expect("env object");
    // Contract section 5: "only PATH, HOME and TMPDIR, LANG, the function's own env and
    // secrets, and the CGI/1.1 meta-variables of RFC 3875 ... plus GOLAMBDA_*".
    // REMOTE_PORT is not in RFC 3875 but Go's net/http/cgi reads it: tolerated.
    let allowed = [
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "GREETING",
        "GATEWAY_INTERFACE",
        "REQUEST_METHOD",
        "QUERY_STRING",
        "PATH_INFO",
        "SCRIPT_NAME",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
        "REMOTE_ADDR",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "AUTH_TYPE",
        "PATH_TRANSLATED",
        "REMOTE_HOST",
        "REMOTE_IDENT",
        "REMOTE_USER",
        "REMOTE_PORT",
        "GOLAMBDA_FUNCTION",
        "GOLAMBDA_VERSION",
        "GOLAMBDA_TRIGGER",
        "GOLAMBDA_REQUEST_ID",
    ];
    let extra: Vec<&String> = map
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()) && !k.starts_with("HTTP_"))
        .collect();
    assert!(
        extra.is_empty(),
        "variables beyond the contract: {extra:?}\n{env}"
    );
}

#[test]
fn each_run_starts_in_an_empty_private_working_dir_emptied_afterwards() {
    let server = Server::new().start();
    server.register_ok("wd", go::WORKDIR, json!({}));
    for _ in 0..3 {
        let report: Value = serde_json::from_str(&server.get("/wd").message()).unwrap();
        let cwd = report["cwd"].as_str().unwrap().to_string();
        assert!(Path::new(&cwd).is_absolute(), "cwd: {report}");
        assert_eq!(
            report["tmpdir"],
            cwd.as_str(),
            "TMPDIR must be the working dir: {report}"
        );
        // The run before wrote a file here, if it had this directory.
        assert_eq!(
            report["entries"], 0,
            "the working dir must start empty: {report}"
        );
        assert_eq!(
            report["write_ok"], true,
            "the working dir must be writable: {report}"
        );
        let emptied =
            || std::fs::read_dir(&cwd).map_or(true, |mut entries| entries.next().is_none());
        assert!(
            eventually(Duration::from_secs(2), emptied),
            "working dir {cwd} still holds what the run wrote"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cwd).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o700), "{cwd} is not private");
        }
    }
}

#[test]
fn default_timeout_and_per_function_timeout_answer_504() {
    let server = Server::new().arg("--timeout").arg("500ms").start();
    let nap = go::sleeper(2000);

    let meta = server.register_ok("nap", &nap, json!({}));
    assert_eq!(meta["timeout_ms"], 500, "default from --timeout: {meta}");
    let answer = server.get("/nap");
    assert_error(&answer, 504, &[]);
    assert!(
        answer.elapsed < Duration::from_millis(1800),
        "504 should come at the 500ms limit, came after {:?}",
        answer.elapsed
    );

    let meta = server.register_ok("nap-long", &nap, json!({"timeout": "4s"}));
    assert_eq!(meta["timeout_ms"], 4000, "{meta}");
    assert_eq!(server.get("/nap-long").message(), "woke\n");
}

/// Runs SPAWN_AND_HANG with a 1s timeout; asserts the 504 and that the function and its
/// `sleep 300` are gone within a second.
fn assert_timeout_kills_tree(setsid: bool) {
    let server = Server::new().start();
    let pidfile = server.io_path("pids");
    let mut env = json!({"PIDFILE": pidfile.display().to_string()});
    if setsid {
        env["SETSID"] = json!("1");
    }
    server.register_ok(
        "hang",
        go::SPAWN_AND_HANG,
        json!({"timeout": "1s", "env": env}),
    );
    let answer = server.get("/hang");
    assert_error(&answer, 504, &[]);
    assert!(
        answer.elapsed < Duration::from_secs(10),
        "504 took {:?}",
        answer.elapsed
    );

    let pids: Vec<u32> = std::fs::read_to_string(&pidfile)
        .expect("the function wrote its pids")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    let _reaper = PidReaper(pids.clone());
    let (function, child) = (pids[0], pids[1]);
    assert!(
        eventually(Duration::from_secs(1), || process_gone(function)
            && process_gone(child)),
        "still running 1s after the 504: function {function} gone={}, its child {child} gone={}",
        process_gone(function),
        process_gone(child)
    );
}

#[test]
fn a_timeout_kills_the_function_and_every_process_it_started() {
    assert_timeout_kills_tree(false);
}

/// Contract hardening beyond the scenario: "every process it started" includes one
/// that called setsid() and so left the function's process group.
#[test]
fn a_timeout_also_kills_a_child_that_left_the_process_group() {
    assert_timeout_kills_tree(true);
}

#[test]
fn non_utf8_stdout_is_converted_lossily() {
    let server = Server::new().start();
    server.register_ok("bytes", go::NOT_UTF8, json!({}));
    assert_eq!(server.get("/bytes").message(), "a\u{fffd}\u{fffd}b\n");
}

#[test]
fn answers_carry_the_request_id_and_server_timing() {
    let server = Server::new().start();
    server.register_ok("ids", go::ENV_DUMP, json!({}));
    let answer = server.get("/ids");
    let (env, _) = env_of(&answer);
    assert_eq!(
        answer.header("x-request-id"),
        env["GOLAMBDA_REQUEST_ID"].as_str(),
        "X-Request-Id should be the run's GOLAMBDA_REQUEST_ID"
    );
    let timing = answer.header("server-timing").unwrap_or("");
    assert!(timing.starts_with("exec;dur="), "Server-Timing: {timing:?}");
    let error = server.get("/missing");
    assert!(
        error.header("x-request-id").is_some(),
        "a 404 without X-Request-Id"
    );
}

#[test]
fn stdout_over_max_output_is_502_and_the_function_is_killed() {
    let server = Server::new()
        .arg("--max-output")
        .arg("64KiB")
        .arg("--timeout")
        .arg("20s")
        .start();
    server.register_ok("spew", go::SPEW, json!({}));

    assert_eq!(server.get("/spew?n=60000").message().len(), 60000);
    assert_error(&server.get("/spew?n=200000"), 502, &[]);
    let endless = server.get("/spew?n=-1");
    assert_error(&endless, 502, &[]);
    assert!(
        endless.elapsed < Duration::from_secs(10),
        "an endless writer must be killed at the cap, not at the timeout ({:?})",
        endless.elapsed
    );
}

#[test]
fn a_failing_function_is_500_with_stdout_and_stderr_kept_apart() {
    let server = Server::new().start();
    server.register_ok("fail", go::FAILER, json!({}));

    let exit = server.get("/fail?exit");
    let body = assert_error(&exit, 500, &[]);
    assert_eq!(body["exit_code"], 3, "{body}");
    assert!(body["signal"].is_null(), "{body}");
    assert_eq!(body["stdout"], "partial out\n", "{body}");
    assert_eq!(body["stderr"], "boom\n", "{body}");

    let killed = server.get("/fail?signal");
    let body = assert_error(&killed, 500, &[]);
    assert!(
        body["exit_code"].is_null(),
        "killed by a signal: exit_code null: {body}"
    );
    assert!(
        !body["signal"].is_null(),
        "the signal should be reported: {body}"
    );
    assert_eq!(body["stdout"], "about to die\n", "{body}");

    // stderr of a successful run never mixes into the answer
    assert_eq!(server.get("/fail?ok").json(), json!({"message": "fine\n"}));
}
