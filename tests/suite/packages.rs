//! Packages: a zip or tar.gz of several files (section 7 of the contract) registered over
//! HTTP, built with the real Go toolchain, run, restarted and rolled back; hostile archives
//! refused with nothing changed.

use crate::harness::archives::{noise, targz_of, zip_of};
use crate::harness::server::registration_body_of;
use crate::harness::{eventually, Response, Server};
use serde_json::{json, Value};
use std::time::Duration;

const MAIN: &str =
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(greeting())\n}\n";
const GREETING: &str = "package main\n\nfunc greeting() string {\n\treturn \"from two files\"\n}\n";

fn register_code(server: &Server, name: &str, code: &[u8], extra: Value) -> Response {
    server.put(
        "/register",
        registration_body_of(name, code, extra).to_string(),
    )
}

fn output(server: &Server, name: &str) -> String {
    let answer = server.get(&format!("/{name}"));
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["message"]
        .as_str()
        .expect("message")
        .to_string()
}

#[test]
fn a_zip_of_several_files_builds_and_runs() {
    let server = Server::new().start();
    let code = zip_of(&[
        ("main.go", MAIN.as_bytes()),
        ("greeting.go", GREETING.as_bytes()),
    ]);
    let answer = register_code(&server, "twofiles", &code, json!({}));
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(output(&server, "twofiles"), "from two files\n");
}

/// A module of its own, vendored, with `package main` in `cmd/hello`.
fn vendored(greeting: &str) -> Vec<(String, Vec<u8>)> {
    let files = [
        (
            "go.mod",
            "module example.com/fn\n\ngo 1.19\n\nrequire example.com/greet v1.0.0\n".to_string(),
        ),
        (
            "vendor/modules.txt",
            "# example.com/greet v1.0.0\n## explicit\nexample.com/greet\n".to_string(),
        ),
        (
            "vendor/example.com/greet/greet.go",
            format!("package greet\n\nfunc Hello() string {{ return \"{greeting}\" }}\n"),
        ),
        (
            "cmd/hello/main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/greet\"\n)\n\nfunc main() {\n\tfmt.Println(greet.Hello())\n}\n"
                .to_string(),
        ),
    ];
    files
        .into_iter()
        .map(|(name, text)| (format!("app/{name}"), text.into_bytes()))
        .collect()
}

fn borrowed(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect()
}

#[test]
fn a_vendored_module_in_a_tar_gz_builds_offline_and_runs() {
    let server = Server::new().start();
    let files = vendored("hello from a vendored module");
    let code = targz_of(&borrowed(&files), 1_700_000_000);
    let answer = register_code(&server, "vendored", &code, json!({"main": "cmd/hello"}));
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(
        output(&server, "vendored"),
        "hello from a vendored module\n"
    );
    let source = server.get("/functions/vendored/source");
    assert_eq!(source.status, 200, "{}", source.text());
    assert_eq!(source.header("Content-Type"), Some("application/gzip"));
    assert_eq!(source.body, code, "the package as uploaded");
    // The same files again, zipped and with other timestamps: the same version, no build.
    let builds = server.go_builds();
    let again = zip_of(&borrowed(&files));
    let answer = register_code(&server, "vendored", &again, json!({"main": "cmd/hello"}));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["version"], 1);
    assert_eq!(server.go_builds(), builds, "nothing was built again");
}

#[test]
fn a_package_survives_restart_and_rollback() {
    let mut server = Server::new().start();
    for greeting in ["first", "second"] {
        let files = vendored(greeting);
        let answer = register_code(
            &server,
            "kept",
            &zip_of(&borrowed(&files)),
            json!({"main": "cmd/hello"}),
        );
        assert!(
            answer.status == 200 || answer.status == 201,
            "{}",
            answer.text()
        );
    }
    assert_eq!(output(&server, "kept"), "second\n");
    server.stop();
    // The executables and the unpacked files are lost; the archives are not.
    for version in [1, 2] {
        std::fs::remove_file(server.version_file("kept", version, "executable"))
            .expect("remove an executable");
    }
    let unpacked = server.data_dir().join("user_functions/kept");
    for entry in std::fs::read_dir(&unpacked)
        .expect("user_functions/kept")
        .flatten()
    {
        if entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path()).expect("remove unpacked files");
        }
    }
    server.restart();
    assert_eq!(output(&server, "kept"), "second\n");
    server
        .post(
            "/functions/kept/rollback",
            json!({"version": 1}).to_string(),
        )
        .expect(200);
    assert!(eventually(Duration::from_secs(30), || {
        server.get("/kept").status == 200
    }));
    assert_eq!(output(&server, "kept"), "first\n");
}

#[test]
fn a_module_that_needs_downloads_is_422_saying_to_vendor() {
    let server = Server::new().start();
    let files: Vec<(String, Vec<u8>)> = vendored("x")
        .into_iter()
        .filter(|(name, _)| !name.contains("vendor/"))
        .collect();
    let answer = register_code(
        &server,
        "needsproxy",
        &zip_of(&borrowed(&files)),
        json!({"main": "cmd/hello"}),
    );
    assert_eq!(answer.status, 422, "{}", answer.text());
    let details = answer.json()["details"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        details.contains("go mod vendor") && details.contains("--goproxy"),
        "{details}"
    );
}

#[test]
fn hostile_archives_are_refused_and_change_nothing() {
    // Unpacked, at most 8 MiB.
    let server = Server::new().arg("--max-package").arg("1MiB").start();
    let main = MAIN.as_bytes();
    let escaping = targz_raw(&[("../../escaped.go", tar::EntryType::Regular, main)]);
    let mut symlink = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    symlink
        .add_symlink(
            "main.go",
            "/etc/passwd",
            zip::write::SimpleFileOptions::default(),
        )
        .expect("symlink");
    let symlink = symlink.finish().expect("zip").into_inner();
    let zeros = vec![0u8; 16 << 20];
    let bomb = zip_of(&[("main.go", main), ("zeros", &zeros)]);
    let many: Vec<(String, Vec<u8>)> = (0..10_001).map(|i| (format!("f{i}"), Vec::new())).collect();
    let many = zip_of(&borrowed(&many));
    let raw = |name: &str, kind: tar::EntryType| targz_raw(&[(name, kind, main)]);
    let mut lying = zip_of(&[("main.go", main), ("zeros", &zeros[..2 << 20])]);
    let (from, to) = ((2u32 << 20).to_le_bytes(), 1000u32.to_le_bytes());
    let mut patched = 0;
    for i in 0..lying.len() - 3 {
        if lying[i..i + 4] == from {
            lying[i..i + 4].copy_from_slice(&to);
            patched += 1;
        }
    }
    assert!(patched >= 2, "declared sizes not found");
    let oversized = zip_of(&[("main.go", main), ("noise", &noise(1, 1_200_000))]);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("escaping", escaping, 400, "'..'"),
        (
            "absolute",
            raw("/etc/cron.d/evil", tar::EntryType::Regular),
            400,
            "absolute",
        ),
        ("symlink", symlink, 400, "symbolic link"),
        (
            "hardlink",
            raw("main.go", tar::EntryType::Link),
            400,
            "hard link",
        ),
        ("fifo", raw("main.go", tar::EntryType::Fifo), 400, "FIFO"),
        (
            "device",
            raw("main.go", tar::EntryType::Char),
            400,
            "device",
        ),
        (
            "casefold",
            zip_of(&[("Main.go", main), ("main.go", main)]),
            400,
            "ignoring case",
        ),
        (
            "twice",
            targz_raw(&[
                ("main.go", tar::EntryType::Regular, main),
                ("main.go", tar::EntryType::Regular, main),
            ]),
            400,
            "twice",
        ),
        ("lying", lying, 400, "declared size"),
        ("bomb", bomb, 413, "unpacks to more than"),
        ("many", many, 413, "more than 10000 entries"),
        ("oversized", oversized, 413, "--max-package"),
    ];
    server.register_ok("keep", MAIN_ALONE, json!({}));
    let registry =
        std::fs::read(server.data_dir().join("registry/registry.json")).expect("registry");
    for (name, code, status, said) in cases {
        let answer = register_code(&server, name, &code, json!({}));
        assert_eq!(answer.status, status, "{name}: {}", answer.text());
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.contains(said), "{name}: {error}");
        server.get("/functions").expect(200);
        assert!(
            !server
                .data_dir()
                .join("user_functions")
                .join(name)
                .join("v1")
                .exists()
                && std::fs::read_dir(server.data_dir().join("user_functions").join(name))
                    .map_or(true, |mut d| d.next().is_none()),
            "{name} left files"
        );
        server.get(&format!("/functions/{name}")).expect(404);
    }
    assert!(!server
        .data_dir()
        .parent()
        .expect("parent")
        .join("escaped.go")
        .exists());
    assert!(!std::path::Path::new("/etc/cron.d/evil").exists());
    let after = std::fs::read(server.data_dir().join("registry/registry.json")).expect("registry");
    assert_eq!(registry, after, "a refused archive changed the registry");
    assert_eq!(output(&server, "keep"), "alone\n");
}

/// A tar.gz of entries `(name, kind, data)` whose names are written as given, past the
/// checks of `tar::Builder`; links point at /etc/passwd.
fn targz_raw(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for (name, kind, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            bytes
        } else {
            &[]
        };
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(*kind);
        if matches!(kind, tar::EntryType::Link | tar::EntryType::Symlink) {
            header.set_link_name("/etc/passwd").expect("link name");
        }
        header.set_cksum();
        builder.append(&header, data).expect("tar entry");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

#[test]
fn a_version_shows_its_files_and_its_build_output() {
    let server = Server::new().start();
    let files = vendored("listed");
    let code = zip_of(&borrowed(&files));
    let answer = register_code(&server, "listed", &code, json!({"main": "cmd/hello"}));
    assert_eq!(answer.status, 201, "{}", answer.text());
    let listed = server.get("/functions/listed/files");
    assert_eq!(listed.status, 200, "{}", listed.text());
    let listed = listed.json();
    let paths: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "cmd/hello/main.go",
            "go.mod",
            "vendor/example.com/greet/greet.go",
            "vendor/modules.txt"
        ]
    );
    let (_, go_mod) = files
        .iter()
        .find(|(n, _)| n == "app/go.mod")
        .expect("go.mod");
    let sha256 = {
        use sha2::Digest;
        sha2::Sha256::digest(go_mod)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(listed[1]["sha256"], sha256.as_str());
    assert_eq!(listed[1]["size"], go_mod.len());
    let one = server.get("/functions/listed/files/go.mod");
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.body, *go_mod);
    for missing in [
        "nothere.go",
        "..%2F..%2F..%2F..%2Fregistry%2Fregistry.json",
        "cmd",
    ] {
        let answer = server.get(&format!("/functions/listed/files/{missing}"));
        assert_eq!(answer.status, 404, "{missing}: {}", answer.text());
    }
    let build = server.get("/functions/listed/versions/1/build");
    assert_eq!(build.status, 200, "{}", build.text());
    assert_eq!(
        build.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    server.get("/functions/listed/versions/9/build").expect(404);
    // One file: listed as main.go.
    server.register_ok("single", MAIN_ALONE, json!({}));
    let single = server.get("/functions/single/files").json();
    assert_eq!(single[0]["path"], "main.go");
    assert_eq!(
        server.get("/functions/single/files/main.go").body,
        MAIN_ALONE.as_bytes()
    );
    // A second build of the same files says that it reused the first.
    let answer = register_code(&server, "listed2", &code, json!({"main": "cmd/hello"}));
    assert_eq!(answer.status, 201, "{}", answer.text());
    let reused = server.get("/functions/listed2/versions/1/build").text();
    assert!(reused.contains("built before"), "{reused}");
}

const MAIN_ALONE: &str =
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"alone\")\n}\n";

/// A module of a proxy: its path, its go.mod, and its other files (name, text).
type Module<'a> = (&'a str, String, Vec<(&'a str, String)>);

/// Writes a module proxy folder (`$GOPROXY` layout) under `dir` holding `modules`, each at
/// v1.0.0.
fn write_proxy(dir: &std::path::Path, modules: &[Module<'_>]) {
    for (path, go_mod, files) in modules {
        let at = dir.join(path).join("@v");
        std::fs::create_dir_all(&at).expect("proxy folder");
        std::fs::write(at.join("list"), "v1.0.0\n").expect("list");
        std::fs::write(
            at.join("v1.0.0.info"),
            r#"{"Version":"v1.0.0","Time":"2026-01-01T00:00:00Z"}"#,
        )
        .expect("info");
        std::fs::write(at.join("v1.0.0.mod"), go_mod).expect("mod");
        let mut entries: Vec<(String, Vec<u8>)> =
            vec![(format!("{path}@v1.0.0/go.mod"), go_mod.clone().into_bytes())];
        for (name, text) in files {
            entries.push((format!("{path}@v1.0.0/{name}"), text.clone().into_bytes()));
        }
        std::fs::write(at.join("v1.0.0.zip"), zip_of(&borrowed(&entries))).expect("zip");
    }
    let mut open = std::process::Command::new("chmod");
    open.arg("-R").arg("a+rX").arg(dir);
    assert!(open.status().expect("chmod").success());
}

/// The function of the proxy tests: `greet` needs `words`, through the proxy.
fn proxied_function(proxy: &std::path::Path, work: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    write_proxy(
        proxy,
        &[
            (
                "example.com/words",
                "module example.com/words\n\ngo 1.19\n".to_string(),
                vec![(
                    "words.go",
                    "package words\n\nfunc Word() string { return \"chained\" }\n".to_string(),
                )],
            ),
            (
                "example.com/greet",
                "module example.com/greet\n\ngo 1.19\n\nrequire example.com/words v1.0.0\n"
                    .to_string(),
                vec![(
                    "greet.go",
                    "package greet\n\nimport \"example.com/words\"\n\nfunc Hello() string { return \"hello, \" + words.Word() }\n"
                        .to_string(),
                )],
            ),
        ],
    );
    let main = "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/greet\"\n)\n\nfunc main() {\n\tfmt.Println(greet.Hello())\n}\n";
    std::fs::create_dir_all(work).expect("work");
    std::fs::write(
        work.join("go.mod"),
        "module example.com/fn\n\ngo 1.19\n\nrequire example.com/greet v1.0.0\n",
    )
    .expect("go.mod");
    std::fs::write(work.join("main.go"), main).expect("main.go");
    // go.sum as `go mod tidy` writes it, with the real toolchain and the same proxy.
    let tidy = std::process::Command::new("go")
        .args(["mod", "tidy"])
        .current_dir(work)
        .env("GOPROXY", format!("file://{}", proxy.display()))
        .env("GOSUMDB", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPATH", work.join("gopath"))
        .env("GOCACHE", work.join("gocache"))
        .output()
        .expect("go mod tidy");
    assert!(
        tidy.status.success(),
        "{}",
        String::from_utf8_lossy(&tidy.stderr)
    );
    ["go.mod", "go.sum", "main.go"]
        .iter()
        .map(|name| {
            let bytes = std::fs::read(work.join(name)).expect("tidied file");
            (name.to_string(), bytes)
        })
        .collect()
}

#[test]
fn modules_come_through_a_file_proxy_with_go_sum_as_the_authority() {
    let proxy_server = Server::new().start();
    let proxy = proxy_server.io_path("proxy");
    let work = proxy_server.io_path("work");
    let files = proxied_function(&proxy, &work);
    let go_sum = String::from_utf8(files[1].1.clone()).expect("go.sum");
    assert!(go_sum.contains("example.com/words"), "{go_sum}");
    let server = Server::new()
        .arg("--goproxy")
        .arg(format!("file://{}", proxy.display()))
        .start();
    let answer = register_code(&server, "proxied", &zip_of(&borrowed(&files)), json!({}));
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(output(&server, "proxied"), "hello, chained\n");

    // go.sum without the indirect module: refused, saying so.
    let mut short = files.clone();
    short[1].1 = go_sum
        .lines()
        .filter(|l| !l.contains("example.com/words"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes();
    let answer = register_code(&server, "shortsum", &zip_of(&borrowed(&short)), json!({}));
    assert_eq!(answer.status, 422, "{}", answer.text());
    let details = answer.json()["details"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(details.contains("go.sum"), "{details}");

    // A go line newer than the toolchain, and a replacement outside the package.
    for (name, change, said) in [
        ("newgo", ("go 1.19", "go 1.99"), "1.99"),
        (
            "replaced",
            (
                "go 1.19",
                "go 1.19\n\nreplace example.com/greet => ../greet",
            ),
            "outside the package",
        ),
    ] {
        let mut changed = files.clone();
        let go_mod = String::from_utf8(changed[0].1.clone()).expect("go.mod");
        changed[0].1 = go_mod.replacen(change.0, change.1, 1).into_bytes();
        let answer = register_code(&server, name, &zip_of(&borrowed(&changed)), json!({}));
        assert_eq!(answer.status, 422, "{name}: {}", answer.text());
        let details = answer.json()["details"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(details.contains(said), "{name}: {details}");
    }

    // Without --goproxy the same package is told to vendor its modules.
    let answer = register_code(
        &proxy_server,
        "noproxy",
        &zip_of(&borrowed(&files)),
        json!({}),
    );
    assert_eq!(answer.status, 422, "{}", answer.text());
    let details = answer.json()["details"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(details.contains("go mod vendor"), "{details}");
}
