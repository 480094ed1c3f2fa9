//! Runtimes (section 8 of the contract): Python, Node.js, Rust and shell functions beside Go,
//! registered over HTTP, checked or built with the real toolchains, and run in every
//! response mode, on http and cron triggers, with their dependencies, under the same limits
//! and isolation as Go functions.

use crate::harness::archives::{targz_of, zip_of};
use crate::harness::server::registration_body_of;
use crate::harness::{assert_error, eventually, is_root, snapshot, Response, Server};
use serde_json::{json, Value};
use std::time::Duration;

/// The runtimes other than Go, with a hello world reading the request each way the
/// contract gives it: the body on stdin, the method and a query in CGI variables, a
/// variable of the function's own and a secret.
const HELLOS: [(&str, &str); 4] = [
    (
        "python",
        "import os, sys\n\
         body = sys.stdin.read()\n\
         print('hello from python', os.environ['REQUEST_METHOD'], os.environ['QUERY_STRING'], \
         os.environ['GREETING'], os.environ['TOKEN'], body)\n",
    ),
    (
        "node",
        "const body = require('fs').readFileSync(0, 'utf8');\n\
         const e = process.env;\n\
         console.log('hello from node', e.REQUEST_METHOD, e.QUERY_STRING, e.GREETING, e.TOKEN, body);\n",
    ),
    (
        "rust",
        "use std::io::Read;\n\
         fn main() {\n\
             let mut body = String::new();\n\
             std::io::stdin().read_to_string(&mut body).unwrap();\n\
             let v = |k: &str| std::env::var(k).unwrap_or_default();\n\
             println!(\"hello from rust {} {} {} {} {}\", v(\"REQUEST_METHOD\"), v(\"QUERY_STRING\"), \
         v(\"GREETING\"), v(\"TOKEN\"), body);\n\
         }\n",
    ),
    (
        "sh",
        "body=$(cat)\n\
         echo \"hello from sh $REQUEST_METHOD $QUERY_STRING $GREETING $TOKEN $body\"\n",
    ),
];

/// What each runtime writes for a CGI answer: a status, a header, the body.
const CGI: [(&str, &str); 4] = [
    (
        "python",
        "print('Status: 201 Created')\nprint('X-Runtime: python')\nprint()\nprint('made', end='')\n",
    ),
    (
        "node",
        "process.stdout.write('Status: 201 Created\\nX-Runtime: node\\n\\nmade');\n",
    ),
    (
        "rust",
        "fn main() { print!(\"Status: 201 Created\\nX-Runtime: rust\\n\\nmade\"); }\n",
    ),
    (
        "sh",
        "printf 'Status: 201 Created\\nX-Runtime: sh\\n\\nmade'\n",
    ),
];

fn register(server: &Server, name: &str, runtime: &str, code: &[u8], extra: Value) -> Response {
    let mut extra = extra;
    extra["runtime"] = json!(runtime);
    server.put(
        "/register",
        registration_body_of(name, code, extra).to_string(),
    )
}

#[track_caller]
fn register_ok(server: &Server, name: &str, runtime: &str, code: &[u8], extra: Value) -> Value {
    let answer = register(server, name, runtime, code, extra);
    assert!(
        answer.status == 201 || answer.status == 200,
        "registering {name} ({runtime}): {} {}",
        answer.status,
        answer.text()
    );
    answer.json()
}

/// Asserts a 422 whose build output names each of `needles`.
#[track_caller]
fn refused_build(answer: &Response, needles: &[&str]) {
    let body = assert_error(answer, 422, &["compilation failed"]);
    let details = body["details"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(details.contains(needle), "no '{needle}' in {details}");
    }
}

#[test]
fn every_runtime_says_hello_in_every_mode() {
    let server = Server::new().start();
    for (runtime, source) in HELLOS {
        let json_name = format!("{runtime}-json");
        let shown = register_ok(
            &server,
            &json_name,
            runtime,
            source.as_bytes(),
            json!({"env": {"GREETING": "hi"}, "secrets": {"TOKEN": "s3cret"}}),
        );
        assert_eq!(shown["runtime"], runtime, "{shown}");
        let answer = server.post(&format!("/{json_name}?x=1"), "the body");
        assert_eq!(
            answer.message(),
            format!("hello from {runtime} POST x=1 hi s3cret the body\n"),
            "{runtime}"
        );
        let raw_name = format!("{runtime}-raw");
        register_ok(
            &server,
            &raw_name,
            runtime,
            source.as_bytes(),
            json!({"response": "raw", "env": {"GREETING": "hey"}, "secrets": {"TOKEN": "t"}}),
        );
        let answer = server.get(&format!("/{raw_name}"));
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(
            answer.text(),
            format!("hello from {runtime} GET  hey t \n"),
            "{runtime}"
        );
        assert!(answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")));
    }
    for (runtime, source) in CGI {
        let name = format!("{runtime}-cgi");
        register_ok(
            &server,
            &name,
            runtime,
            source.as_bytes(),
            json!({"response": "cgi"}),
        );
        let answer = server.get(&format!("/{name}"));
        assert_eq!(answer.status, 201, "{runtime}: {}", answer.text());
        assert_eq!(answer.header("x-runtime"), Some(runtime), "{runtime}");
        assert_eq!(answer.text(), "made", "{runtime}");
    }
}

#[test]
fn code_that_does_not_parse_is_422_naming_the_file_and_line() {
    let server = Server::new().start();
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "python",
            "print('ok')\ndef broken(:\n    pass\n",
            &["main.py", "line 2", "SyntaxError"],
        ),
        (
            "node",
            "console.log('ok');\nfunction (\n",
            &["index.js:2", "SyntaxError"],
        ),
        (
            "rust",
            "fn main() {\n    let x: u32 = \"text\";\n}\n",
            &["main.rs:2", "mismatched types"],
        ),
        ("sh", "echo ok\nif then\n", &["main.sh: 2", "Syntax error"]),
    ];
    for (runtime, source, needles) in cases {
        let name = format!("broken-{runtime}");
        let answer = register(&server, &name, runtime, source.as_bytes(), json!({}));
        let body = assert_error(&answer, 422, &["compilation failed"]);
        let details = body["details"].as_str().expect("details");
        for needle in needles {
            assert!(
                details.contains(needle),
                "{runtime}: no '{needle}' in {details}"
            );
        }
        assert!(
            !details.contains("/build-"),
            "{runtime}: the build folder leaks into {details}"
        );
        server.get(&format!("/functions/{name}")).expect(404);
    }
    // A package's other files are checked too, each named by its path in the package.
    let code = zip_of(&[
        ("main.py", b"import helper\n"),
        ("lib/helper.py", b"x = (\n"),
    ]);
    let answer = register(&server, "broken-lib", "python", &code, json!({}));
    let body = assert_error(&answer, 422, &["compilation failed"]);
    assert!(
        body["details"]
            .as_str()
            .is_some_and(|d| d.contains("lib/helper.py") && d.contains("line 1")),
        "{body}"
    );
}

/// A wheel of a pure-Python package, made as pip expects one: a zip of the module and its
/// `.dist-info` folder with METADATA, WHEEL and RECORD.
fn wheel(name: &str, version: &str, module: &str) -> Vec<u8> {
    use base64::Engine;
    use sha2::Digest;
    let info = format!("{name}-{version}.dist-info");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (format!("{name}/__init__.py"), module.as_bytes().to_vec()),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").into_bytes(),
        ),
        (
            format!("{info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: golambda-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record: String = files
        .iter()
        .map(|(path, bytes)| {
            let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(bytes));
            format!("{path},sha256={digest},{}\n", bytes.len())
        })
        .collect();
    record.push_str(&format!("{info}/RECORD,,\n"));
    files.push((format!("{info}/RECORD"), record.into_bytes()));
    let borrowed: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
        .collect();
    zip_of(&borrowed)
}

#[test]
fn python_requirements_come_from_the_package_s_wheels() {
    let server = Server::new().start();
    let greet = wheel(
        "greet",
        "1.0",
        "def hello(who):\n    return 'hello ' + who + ' from a wheel'\n",
    );
    let code = zip_of(&[
        (
            "main.py",
            b"import sys, greet\nprint(greet.hello(sys.stdin.read()))\n",
        ),
        ("requirements.txt", b"greet==1.0\n"),
        ("wheels/greet-1.0-py3-none-any.whl", &greet),
    ]);
    register_ok(&server, "wheeled", "python", &code, json!({}));
    assert_eq!(
        server.post("/wheeled", "Ann").message(),
        "hello Ann from a wheel\n"
    );
    let build = server.get("/functions/wheeled/versions/1/build");
    build.expect(200);
    assert!(build.text().contains("greet"), "{}", build.text());
    // Without the wheel nothing is downloaded: the answer says where wheels come from.
    let code = zip_of(&[
        ("main.py", b"import greet\n"),
        ("requirements.txt", b"greet==1.0\n"),
    ]);
    let answer = register(&server, "unwheeled", "python", &code, json!({}));
    refused_build(&answer, &["wheels/", "--pip-index-url"]);
    // A requirement that would build from source (code run at build time) is refused.
    let code = zip_of(&[
        ("main.py", b"print(1)\n"),
        ("requirements.txt", b"-e ./local\n"),
        ("wheels/greet-1.0-py3-none-any.whl", &greet),
    ]);
    let answer = register(&server, "editable", "python", &code, json!({}));
    refused_build(&answer, &["requirements.txt line 1"]);
}

#[test]
fn node_modules_come_with_the_package_as_commonjs_or_es_modules() {
    let server = Server::new().start();
    let dependency: [(&str, &[u8]); 2] = [
        (
            "node_modules/shout/package.json",
            br#"{"name":"shout","version":"1.0.0","main":"index.js"}"#,
        ),
        (
            "node_modules/shout/index.js",
            b"module.exports = (s) => s.toUpperCase() + '!';\n",
        ),
    ];
    let mut common: Vec<(&str, &[u8])> = vec![
        ("package.json", br#"{"name":"fn","main":"src/app.js"}"#),
        (
            "src/app.js",
            b"const shout = require('shout');\nconst { who } = require('./who');\nconsole.log(shout('hello ' + who));\n",
        ),
        ("src/who.js", b"exports.who = 'commonjs';\n"),
    ];
    common.extend(dependency);
    register_ok(&server, "common", "node", &zip_of(&common), json!({}));
    assert_eq!(server.get("/common").message(), "HELLO COMMONJS!\n");
    let mut module: Vec<(&str, &[u8])> = vec![
        ("package.json", br#"{"name":"fn","type":"module"}"#),
        (
            "index.js",
            b"import shout from 'shout';\nimport { who } from './who.js';\nconsole.log(shout('hello ' + who));\n",
        ),
        ("who.js", b"export const who = 'es modules';\n"),
    ];
    module.extend(dependency);
    register_ok(&server, "esm", "node", &targz_of(&module, 7), json!({}));
    assert_eq!(server.get("/esm").message(), "HELLO ES MODULES!\n");
    // One file with `import` is an ES module.
    register_ok(
        &server,
        "single-esm",
        "node",
        b"import { platform } from 'node:os';\nconsole.log(typeof platform());\n",
        json!({}),
    );
    assert_eq!(server.get("/single-esm").message(), "string\n");
    // Dependencies without node_modules and no registry: 422 saying what to do.
    let code = zip_of(&[
        (
            "package.json",
            br#"{"name":"fn","dependencies":{"shout":"1.0.0"}}"#,
        ),
        ("index.js", b"require('shout');\n"),
    ]);
    let answer = register(&server, "bare", "node", &code, json!({}));
    refused_build(&answer, &["node_modules", "--npm-registry"]);
}

#[test]
fn a_cargo_package_builds_with_its_vendored_crates() {
    let server = Server::new().start();
    let checksum = "ab".repeat(32);
    let lock = format!(
        "version = 3\n\n[[package]]\nname = \"fn\"\nversion = \"0.1.0\"\ndependencies = [\n \"shout\",\n]\n\n\
         [[package]]\nname = \"shout\"\nversion = \"1.0.0\"\n\
         source = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{checksum}\"\n"
    );
    let crate_checksum = format!("{{\"files\":{{}},\"package\":\"{checksum}\"}}");
    let files: [(&str, &[u8]); 8] = [
        (
            "Cargo.toml",
            b"[package]\nname = \"fn\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nshout = \"1.0\"\n",
        ),
        ("Cargo.lock", lock.as_bytes()),
        (
            "src/main.rs",
            b"fn main() { println!(\"{}\", shout::loud(\"hello from a vendored crate\")); }\n",
        ),
        (
            ".cargo/config.toml",
            b"[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n[source.vendored-sources]\ndirectory = \"vendor\"\n",
        ),
        (
            "vendor/shout/Cargo.toml",
            b"[package]\nname = \"shout\"\nversion = \"1.0.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n",
        ),
        (
            "vendor/shout/build.rs",
            b"fn main() { println!(\"cargo:rustc-env=SHOUT_BUILT=by its build script\"); }\n",
        ),
        (
            "vendor/shout/src/lib.rs",
            b"pub fn loud(s: &str) -> String { format!(\"{}! ({})\", s.to_uppercase(), env!(\"SHOUT_BUILT\")) }\n",
        ),
        ("vendor/shout/.cargo-checksum.json", crate_checksum.as_bytes()),
    ];
    register_ok(&server, "crated", "rust", &targz_of(&files, 1), json!({}));
    assert_eq!(
        server.get("/crated").message(),
        "HELLO FROM A VENDORED CRATE! (by its build script)\n"
    );
    // --locked: a lock file that does not match Cargo.toml is refused, nothing fetched.
    let mut unlocked = files;
    unlocked[1] = ("Cargo.lock", b"version = 3\n");
    let answer = register(
        &server,
        "unlocked",
        "rust",
        &targz_of(&unlocked, 1),
        json!({}),
    );
    refused_build(&answer, &["--locked"]);
}

#[test]
fn cron_functions_of_every_runtime_run_on_schedule() {
    let server = Server::new().start();
    let sources = [
        (
            "python",
            "import os\nprint('tick', os.environ['GOLAMBDA_TRIGGER'])\n",
        ),
        (
            "node",
            "console.log('tick', process.env.GOLAMBDA_TRIGGER);\n",
        ),
        ("sh", "echo tick $GOLAMBDA_TRIGGER\n"),
        (
            "rust",
            "fn main() { println!(\"tick {}\", std::env::var(\"GOLAMBDA_TRIGGER\").unwrap()); }\n",
        ),
    ];
    for (runtime, source) in sources {
        register_ok(
            &server,
            &format!("tick-{runtime}"),
            runtime,
            source.as_bytes(),
            json!({"trigger": "@every 1s"}),
        );
    }
    for (runtime, _) in sources {
        let runs = format!("/functions/tick-{runtime}/runs");
        let ran = eventually(Duration::from_secs(20), || {
            let runs = server.get(&runs).json();
            runs.as_array().is_some_and(|runs| {
                runs.iter()
                    .any(|r| r["status"] == "ok" && r["stdout"] == "tick cron\n")
            })
        });
        assert!(ran, "{runtime}: {}", server.get(&runs).text());
    }
}

/// Each runtime's memory hog and endless loop.
const HOGS: [(&str, &str, &str); 4] = [
    (
        "python",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n",
        "while True:\n    pass\n",
    ),
    (
        "node",
        "const chunks = [];\nfor (;;) chunks.push(Buffer.alloc(16 << 20, 1));\n",
        "for (;;) {}\n",
    ),
    (
        "rust",
        "fn main() {\n    let mut chunks = Vec::new();\n    loop {\n        chunks.push(vec![1u8; 16 << 20]);\n    }\n}\n",
        "fn main() {\n    let mut n: u64 = 0;\n    loop {\n        n = std::hint::black_box(n.wrapping_add(1));\n    }\n}\n",
    ),
    (
        "sh",
        "x=$(head -c 300000000 /dev/zero | tr '\\0' a)\necho ${#x}\n",
        "sleep 37 &\nsleep 37\n",
    ),
];

#[test]
fn every_runtime_is_held_to_the_run_limits() {
    let server = Server::new().start();
    for (runtime, hog, spin) in HOGS {
        register_ok(
            &server,
            &format!("hog-{runtime}"),
            runtime,
            hog.as_bytes(),
            json!({"memory": "64MiB"}),
        );
        let answer = server.get(&format!("/hog-{runtime}"));
        let body = assert_error(&answer, 500, &[]);
        // Stopped by the limit: the allocation failed, or the memory cgroup killed it.
        let stderr = body["stderr"].as_str().unwrap_or_default().to_lowercase();
        let out_of_memory = [
            "memoryerror",
            "allocation failed",
            "memory allocation",
            "out of space",
        ]
        .iter()
        .any(|words| stderr.contains(words))
            || body["signal"] == "SIGKILL";
        assert!(out_of_memory, "{runtime}: {body}");
        register_ok(
            &server,
            &format!("spin-{runtime}"),
            runtime,
            spin.as_bytes(),
            json!({"timeout": "1s"}),
        );
        assert_error(
            &server.get(&format!("/spin-{runtime}")),
            504,
            &["time limit"],
        );
    }
    // What the shell started is stopped with it.
    let left = eventually(Duration::from_secs(5), || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", "sleep 37"])
            .output()
            .expect("pgrep");
        out.stdout.is_empty()
    });
    assert!(left, "a process the shell started outlived its run");
}

#[test]
fn runs_see_none_of_the_host_s_packages_and_write_no_bytecode() {
    let server = Server::new().start();
    let code = zip_of(&[
        (
            "main.py",
            b"import sys, json, helper\nprint(json.dumps({'path': sys.path, 'flags': [sys.flags.no_site, sys.flags.no_user_site, sys.flags.dont_write_bytecode], 'helper': helper.X}))\n",
        ),
        ("helper.py", b"X = 'imported'\n"),
    ]);
    register_ok(&server, "paths", "python", &code, json!({}));
    let seen: Value =
        serde_json::from_str(&server.get("/paths").message()).expect("the function's JSON");
    assert_eq!(seen["helper"], "imported");
    assert_eq!(seen["flags"], json!([1, 1, 1]), "{seen}");
    let path = seen["path"].to_string();
    assert!(
        !path.contains("site-packages") && !path.contains("dist-packages"),
        "{path}"
    );
    let tree = server.data_dir().join("plugins").join("paths");
    let written: Vec<String> = snapshot(&tree).into_iter().map(|(path, _)| path).collect();
    assert!(
        written.iter().any(|p| p.ends_with("/helper.py")),
        "the version's tree was not found: {written:?}"
    );
    assert!(
        written
            .iter()
            .all(|p| !p.contains("__pycache__") && !p.ends_with(".pyc")),
        "{written:?}"
    );
    register_ok(
        &server,
        "globals",
        "node",
        b"console.log(JSON.stringify(require('module').globalPaths));\n",
        json!({}),
    );
    let globals = server.get("/globals").message();
    assert!(!globals.contains("/root"), "{globals}");
}

#[test]
fn runtimes_are_listed_and_a_missing_toolchain_is_503() {
    let server = Server::new().arg("--node").arg("/nonexistent/node").start();
    let listed = server.get("/runtimes").expect(200).json();
    let by_name = |name: &str| {
        listed
            .as_array()
            .and_then(|all| all.iter().find(|r| r["runtime"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not listed: {listed}"))
    };
    for name in ["go", "python", "rust", "sh"] {
        let runtime = by_name(name);
        assert_eq!(runtime["available"], true, "{runtime}");
        assert!(runtime["version"].is_string(), "{runtime}");
        assert!(runtime["path"].is_string(), "{runtime}");
    }
    let node = by_name("node");
    assert_eq!(node["available"], false, "{node}");
    assert!(
        node["reason"]
            .as_str()
            .is_some_and(|r| r.contains("--node")),
        "{node}"
    );
    let answer = register(&server, "nonode", "node", b"console.log(1)\n", json!({}));
    assert_error(&answer, 503, &["node", "install Node.js"]);
    assert!(answer.header("retry-after").is_some());
    server.get("/functions/nonode").expect(404);
    let answer = register(&server, "cobol", "cobol", b"x", json!({}));
    assert_error(&answer, 400, &["runtime", "python", "node"]);
    let answer = register(
        &server,
        "warmpy",
        "python",
        b"print(1)\n",
        json!({"response": "fcgi"}),
    );
    assert_error(&answer, 400, &["response", "go runtime"]);
}

#[test]
fn a_toolchain_other_users_cannot_reach_is_reported_unavailable() {
    if !is_root() {
        return;
    }
    let server = Server::new().start();
    // A link to the real interpreter inside a folder only the server's user may enter, as
    // a pyenv or rustup toolchain under /root is.
    let closed = server
        .data_dir()
        .parent()
        .expect("a parent")
        .join("closed-home");
    std::fs::create_dir_all(closed.join("bin")).expect("mkdir");
    let python = crate::harness::server::other_toolchains()
        .into_iter()
        .find(|(flag, _)| *flag == "--python")
        .map(|(_, path)| path)
        .expect("a python for the suite");
    std::fs::copy(&python, closed.join("bin/python3")).expect("copy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut server = server;
    let flag = closed.join("bin/python3").display().to_string();
    server.restart_with(|builder| builder.arg("--python").arg(flag.clone()));
    let listed = server.get("/runtimes").expect(200).json();
    let python = listed
        .as_array()
        .and_then(|all| all.iter().find(|r| r["runtime"] == "python"))
        .cloned()
        .expect("python is listed");
    assert_eq!(python["available"], false, "{python}");
    let reason = python["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("--python") && reason.contains("closed-home"),
        "{reason}"
    );
    assert!(server.log().contains("python runtime is not available"));
    let answer = register(&server, "closed", "python", b"print(1)\n", json!({}));
    assert_error(&answer, 503, &["python", "install Python"]);
}

#[test]
fn interpreted_functions_survive_restarts_and_a_vanished_interpreter() {
    let server = Server::new().start();
    // The suite's interpreter through a link the test can take away.
    let python = crate::harness::server::other_toolchains()
        .into_iter()
        .find(|(flag, _)| *flag == "--python")
        .map(|(_, path)| path)
        .expect("a python for the suite");
    let link = server.io_path("python3");
    std::os::unix::fs::symlink(&python, &link).expect("symlink");
    let flag = link.display().to_string();
    let mut server = server;
    server.reconfigure(|builder| builder.arg("--python").arg(flag.clone()));
    register_ok(
        &server,
        "kept",
        "python",
        b"print('still here')\n",
        json!({}),
    );
    register_ok(
        &server,
        "kept",
        "python",
        b"print('version two')\n",
        json!({}),
    );
    server.restart();
    assert_eq!(server.get("/kept").message(), "version two\n");
    // The tree lost: rebuilt from the stored source at start.
    let tree = server.data_dir().join("plugins").join("kept");
    for entry in std::fs::read_dir(&tree).expect("the trees").flatten() {
        std::fs::remove_dir_all(entry.path()).expect("rm");
    }
    server.restart();
    assert_eq!(server.get("/kept").message(), "version two\n");
    server
        .post("/functions/kept/rollback", r#"{"version":1}"#)
        .expect(200);
    assert_eq!(server.get("/kept").message(), "still here\n");
    // The interpreter gone: runs answer 503, and the function stays.
    std::fs::remove_file(&link).expect("rm link");
    assert_error(&server.get("/kept"), 503, &["python"]);
    server.restart();
    server.get("/functions/kept").expect(200);
    assert_error(&server.get("/kept"), 503, &["python"]);
    // Installed again while the server runs: taken up without a restart.
    std::os::unix::fs::symlink(&python, &link).expect("symlink again");
    assert_eq!(server.get("/kept").message(), "still here\n");
    let listed = server.get("/runtimes").json();
    assert!(
        listed.as_array().is_some_and(|all| all
            .iter()
            .any(|r| r["runtime"] == "python" && r["available"] == true)),
        "{listed}"
    );
}

#[test]
fn python_requirements_can_come_from_the_configured_index() {
    // A simple index (PEP 503) in a folder every user can read, as a file:// URL.
    let server = Server::new().start();
    let index = server.io_path("index");
    let greet = wheel(
        "greet",
        "1.0",
        "def hello(who):\n    return 'hello ' + who + ' from the index'\n",
    );
    std::fs::create_dir_all(index.join("simple/greet")).expect("mkdir");
    std::fs::write(index.join("greet-1.0-py3-none-any.whl"), &greet).expect("wheel");
    std::fs::write(
        index.join("simple/greet/index.html"),
        "<a href=\"../../greet-1.0-py3-none-any.whl\">greet-1.0-py3-none-any.whl</a>\n",
    )
    .expect("index page");
    let url = format!("file://{}/simple/", index.display());
    let mut server = server;
    server.reconfigure(|builder| builder.arg("--pip-index-url").arg(url.clone()));
    let code = zip_of(&[
        (
            "main.py",
            b"import sys, greet\nprint(greet.hello(sys.stdin.read()))\n",
        ),
        ("requirements.txt", b"greet==1.0\n"),
    ]);
    register_ok(&server, "indexed", "python", &code, json!({}));
    assert_eq!(
        server.post("/indexed", "Bo").message(),
        "hello Bo from the index\n"
    );
}

/// Serves `body` to every request on a loopback port until the test ends; returns the port.
fn serve_file(body: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    port
}

#[test]
fn node_packages_can_come_from_the_configured_registry() {
    use base64::Engine;
    use sha2::Digest;
    let tarball = targz_of(
        &[
            (
                "package/package.json",
                br#"{"name":"shout","version":"1.0.0","main":"index.js"}"#,
            ),
            (
                "package/index.js",
                b"module.exports = (s) => s.toUpperCase() + ' (from the registry)';\n",
            ),
        ],
        1,
    );
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&tarball))
    );
    let port = serve_file(tarball);
    let server = Server::new()
        .arg("--npm-registry")
        .arg(format!("http://127.0.0.1:{port}/"))
        .start();
    let lock = json!({
        "name": "fn", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
        "packages": {
            "": {"name": "fn", "version": "1.0.0", "dependencies": {"shout": "1.0.0"}},
            "node_modules/shout": {
                "version": "1.0.0",
                "resolved": format!("http://127.0.0.1:{port}/shout/-/shout-1.0.0.tgz"),
                "integrity": integrity,
            }
        }
    })
    .to_string();
    let code = zip_of(&[
        (
            "package.json",
            br#"{"name":"fn","version":"1.0.0","dependencies":{"shout":"1.0.0"}}"#,
        ),
        ("package-lock.json", lock.as_bytes()),
        ("index.js", b"console.log(require('shout')('hello'));\n"),
    ]);
    register_ok(&server, "fetched", "node", &code, json!({}));
    assert_eq!(
        server.get("/fetched").message(),
        "HELLO (from the registry)\n"
    );
}

#[test]
fn after_a_run_a_server_thread_keeps_cgroup_joins_cheap_then_rests() {
    if !crate::harness::server::has_memory_cgroups() {
        return;
    }
    let server = Server::new().start();
    register_ok(&server, "once", "sh", b"echo once\n", json!({}));
    assert_eq!(server.get("/once").message(), "once\n");
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .expect("the server's threads")
        .flatten()
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect();
    let group_of_ours = || {
        ["keeper-a", "keeper-b"].into_iter().find(|group| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/memory/golambda/{group}/tasks"))
                .is_ok_and(|tasks| tasks.lines().any(|t| threads.iter().any(|o| o == t)))
        })
    };
    // Where the thread is, looked at 60 times 5 ms apart (it moves every 10 ms).
    let samples = || -> Vec<Option<&str>> {
        (0..60)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(5));
                group_of_ours()
            })
            .collect()
    };
    // While runs are recent, a thread of the server moves between the two groups.
    let seen = samples();
    assert!(
        seen.contains(&Some("keeper-a")) && seen.contains(&Some("keeper-b")),
        "no thread of the server moves between the keeper's groups: {seen:?}"
    );
    // Some seconds after the last run it rests: it stays in one group.
    let resting = eventually(Duration::from_secs(10), || {
        let seen = samples();
        seen[0].is_some() && seen.iter().all(|group| *group == seen[0])
    });
    assert!(resting, "the keeper goes on moving with no run");
}

#[test]
fn the_compile_timeout_bounds_a_whole_build_not_each_step() {
    // 200 scripts take node some seconds to check one by one, each check well within the
    // limit: the build as a whole is what --compile-timeout bounds.
    let server = Server::new().arg("--compile-timeout").arg("1s").start();
    let names: Vec<String> = (0..200).map(|i| format!("lib/m{i}.js")).collect();
    let mut files: Vec<(&str, &[u8])> = vec![("index.js", b"console.log('hi');\n")];
    files.extend(
        names
            .iter()
            .map(|name| (name.as_str(), &b"exports.x = 1;\n"[..])),
    );
    let answer = register(&server, "many", "node", &zip_of(&files), json!({}));
    let body = assert_error(&answer, 422, &["compilation failed"]);
    assert!(
        body["details"]
            .as_str()
            .is_some_and(|d| d.contains("--compile-timeout (1s)")),
        "{body}"
    );
    server.get("/functions/many").expect(404);
}

#[test]
fn a_run_cannot_climb_from_its_tree_to_its_function_s_other_versions() {
    if !is_root() {
        return;
    }
    let server = Server::new().start();
    register_ok(&server, "climber", "python", b"print('v1')\n", json!({}));
    let versions = server.data_dir().join("plugins").join("climber");
    let first = std::fs::read_dir(&versions)
        .expect("the function's folder")
        .flatten()
        .map(|entry| entry.path().join("main.py"))
        .find(|main| main.is_file())
        .expect("version 1's main.py");
    // Told where version 1 is, the run can neither list its tree's parent nor open it.
    let climb = b"import os\n\
        up = os.path.dirname(__file__) + '/..'\n\
        seen = []\n\
        for look in (lambda: os.listdir(up), lambda: open(os.environ['FIRST']).read()):\n\
        \x20   try:\n        seen.append(str(look()))\n\
        \x20   except PermissionError:\n        seen.append('refused')\n\
        print(' '.join(seen))\n";
    let env = json!({"env": {"FIRST": first.display().to_string()}});
    register_ok(&server, "climber", "python", climb, env);
    assert_eq!(server.get("/climber").message(), "refused refused\n");
}

#[test]
fn a_package_may_not_hold_the_build_s_temporary_folder() {
    let server = Server::new().start();
    for (runtime, main, source) in [
        ("go", "main.go", &b"package main\n\nfunc main() {}\n"[..]),
        ("python", "main.py", &b"print(1)\n"[..]),
    ] {
        let code = zip_of(&[(main, source), (".golambda-tmp/planted", b"x")]);
        let name = format!("planted-{runtime}");
        let answer = register(&server, &name, runtime, &code, json!({}));
        refused_build(&answer, &["may not hold a .golambda-tmp"]);
        server.get(&format!("/functions/{name}")).expect(404);
    }
}
