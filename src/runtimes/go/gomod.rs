//! What the server reads in a package's `go.mod` before building it: the `go` line, checked
//! against the toolchain, and `replace` directives that point at a folder, which must stay
//! inside the package. A small reader of those two directives, not a full parser: anything
//! else is left to `go` itself. Pure: reads nothing from disk.

/// Why a `go.mod` cannot be built here, as the 422's details say it.
pub fn refuse(go_mod: &str, toolchain: &str) -> Option<String> {
    let mut in_replace_block = false;
    for raw in go_mod.lines() {
        let line = raw.split("//").next().unwrap_or("").trim();
        if in_replace_block {
            if line == ")" {
                in_replace_block = false;
            } else if let Some(refusal) = replaced_outside(line) {
                return Some(refusal);
            }
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("go"), Some(wanted)) if newer(wanted, toolchain) => {
                return Some(format!(
                    "go.mod asks for go {wanted}, newer than the server's toolchain ({toolchain}); \
                     lower the go line or start the server with a newer --go"
                ));
            }
            (Some("replace"), Some("(")) => in_replace_block = true,
            (Some("replace"), Some(_)) => {
                if let Some(refusal) = replaced_outside(line.trim_start_matches("replace")) {
                    return Some(refusal);
                }
            }
            _ => {}
        }
    }
    None
}

/// A replacement (`old [version] => new [version]`) whose new side is a folder outside the
/// package.
fn replaced_outside(directive: &str) -> Option<String> {
    let (old, new) = directive.split_once("=>")?;
    let target = new.split_whitespace().next()?;
    let local = target.starts_with("./")
        || target.starts_with("../")
        || target == "."
        || target == ".."
        || target.starts_with('/')
        || target.starts_with('\\')
        || target.as_bytes().get(1) == Some(&b':');
    if !local {
        return None;
    }
    let mut depth: i64 = 0;
    let escapes = target.starts_with('/')
        || target.starts_with('\\')
        || target.as_bytes().get(1) == Some(&b':')
        || target.split(['/', '\\']).any(|part| {
            match part {
                "" | "." => {}
                ".." => depth -= 1,
                _ => depth += 1,
            }
            depth < 0
        });
    escapes.then(|| {
        format!(
            "go.mod replaces {} with {target}, a folder outside the package; put the module \
             inside the package (or vendor it with `go mod vendor`)",
            old.split_whitespace().next().unwrap_or("a module")
        )
    })
}

/// Whether the `go` line's version is newer than the toolchain's (`go1.19.8`).
fn newer(wanted: &str, toolchain: &str) -> bool {
    let parse = |text: &str| -> Vec<u64> {
        text.trim_start_matches("go")
            .split(['.', '-', 'r', 'b'])
            .take(3)
            .map_while(|part| part.parse().ok())
            .collect()
    };
    let (wanted, have) = (parse(wanted), parse(toolchain));
    !wanted.is_empty() && !have.is_empty() && wanted > have
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_go_line_newer_than_the_toolchain_names_both() {
        let refusal = refuse("module m\n\ngo 1.22\n", "go1.19.8").expect("refused");
        assert!(
            refusal.contains("1.22") && refusal.contains("go1.19.8"),
            "{refusal}"
        );
        assert!(refuse("module m\ngo 1.19\n", "go1.19.8").is_none());
        assert!(refuse("module m\ngo 1.18\n", "go1.19.8").is_none());
        assert!(refuse("module m\ngo 1.19.9\n", "go1.19.8").is_some());
        assert!(refuse("module m\ngo 1.20 // a comment\n", "go1.19.8").is_some());
    }

    #[test]
    fn a_replacement_outside_the_package_is_refused() {
        for go_mod in [
            "module m\nreplace example.com/x => ../x\n",
            "module m\nreplace example.com/x v1.0.0 => /etc/x\n",
            "module m\nreplace (\n\texample.com/y => ./y\n\texample.com/x => ./a/../../x\n)\n",
            "module m\nreplace example.com/x => C:\\x\n",
        ] {
            let refusal = refuse(go_mod, "go1.19.8").expect(go_mod);
            assert!(refusal.contains("outside the package"), "{refusal}");
        }
        for go_mod in [
            "module m\nreplace example.com/x => ./third_party/x\n",
            "module m\nreplace example.com/x => example.com/fork v1.2.0\n",
            "module m\nreplace (\n\texample.com/x => ./a/../x\n)\n",
        ] {
            assert!(refuse(go_mod, "go1.19.8").is_none(), "{go_mod}");
        }
    }
}
