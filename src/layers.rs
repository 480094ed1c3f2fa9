//! The dependency rule of `docs/ARCHITECTURE.md`, checked on the source: every top-level
//! module sits in a layer, and a module names (`crate::…`) only modules of its own layer
//! or of lower ones. Test-only; it reads `src/` and changes nothing.

use std::path::Path;

/// The layers, lowest first.
const LAYERS: &[&[&str]] = &[
    // Leaves: plain types and helpers with no state of the server's.
    &["units", "ids", "sync", "prop", "error", "reply"],
    // Everything OS-specific.
    &["platform"],
    // Mechanisms that know no function: child processes, cron maths, the run history,
    // counters, run users, settings.
    &[
        "runner",
        "scheduler",
        "history",
        "metrics",
        "concurrency",
        "users",
        "config",
        "credentials",
        "packages",
    ],
    // Stores and long-lived processes: builds, the registry, warm processes.
    &["runtimes", "builds", "registry", "warm"],
    // The domain: what can happen to a function.
    &["functions"],
    // HTTP: the accept loop, routing, access, its own state.
    &["http"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `crate::name` that `text` mentions.
fn named_modules(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .map(|(at, _)| {
            text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn visit(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            visit(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_module_names_only_its_own_layer_or_lower_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut broken = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        let module = first.trim_end_matches(".rs");
        if matches!(module, "lib" | "main" | "layers" | "build") {
            continue;
        }
        let Some(own) = layer_of(module) else {
            broken.push(format!(
                "{}: module {module} is in no layer",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a source file");
        for named in named_modules(&text) {
            match layer_of(&named) {
                Some(layer) if layer <= own => {}
                Some(_) => broken.push(format!("{} names crate::{named}", relative.display())),
                None => broken.push(format!(
                    "{}: crate::{named} is in no layer",
                    relative.display()
                )),
            }
        }
    }
    assert!(
        broken.is_empty(),
        "the dependency rule is broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_rule_sees_a_violation() {
    assert_eq!(
        named_modules("use crate::http::Front; crate::sync::lock(&x)"),
        ["http", "sync"]
    );
    assert!(layer_of("http") > layer_of("functions"));
    assert!(layer_of("platform") < layer_of("runner"));
}
