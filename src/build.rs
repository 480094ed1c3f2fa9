//! Build script: links the server with packed relative relocations (`DT_RELR`) where the
//! machine building it can run such a program, which keeps about 0.8 MiB of relocation
//! records out of the server's memory at start (docs/PERFORMANCE.md). Decides by linking
//! and running a tiny C program with the flag, so an older linker or C library simply
//! goes without. Never changes what the server does, only how its binary is laid out.

use std::path::Path;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=src/build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let native = var("TARGET") == var("HOST");
    if native && var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        let out = std::path::PathBuf::from(var("OUT_DIR"));
        if links_and_runs(&out) {
            println!("cargo:rustc-link-arg-bins={FLAG}");
        }
    }
}

/// Whether `cc` links a program with the flag, without a warning, and the program starts.
fn links_and_runs(out: &Path) -> bool {
    let source = out.join("relr.c");
    let program = out.join("relr");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(cc)
        .arg("-pie")
        .arg("-fPIE")
        .arg(FLAG)
        .arg("-Wl,--fatal-warnings")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .output()
        .is_ok_and(|o| o.status.success());
    linked
        && Command::new(&program)
            .output()
            .is_ok_and(|o| o.status.success())
}
