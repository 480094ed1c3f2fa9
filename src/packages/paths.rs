//! Entry names of an archive, checked before anything is written: a name becomes a
//! relative path of plain components, or the entry is refused with the reason. Also keeps
//! the names seen so far, to refuse duplicates, names that differ only in case, and a file
//! that another entry takes for a folder. Pure: touches no file.

use std::collections::HashMap;

/// Why a name cannot be taken.
pub fn check(name: &str) -> Result<Vec<String>, &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.chars().any(char::is_control) {
        return Err("the name holds a control character");
    }
    // Zip files made on Windows may separate with a backslash: read it as a separator, so
    // that `..\x` is caught like `../x`.
    let name = name.replace('\\', "/");
    if name.starts_with('/') {
        return Err("the path is absolute");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return Err("the path starts with a drive letter");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => continue,
            ".." => return Err("the path contains '..'"),
            _ => parts.push(part.to_string()),
        }
    }
    if parts.is_empty() {
        return Err("the name has no file name in it");
    }
    Ok(parts)
}

/// What a path is in the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Folder,
}

/// The paths taken so far, by their case-folded form.
#[derive(Default)]
pub struct Taken {
    by_folded: HashMap<String, (String, Kind)>,
}

impl Taken {
    /// Takes `parts` as a `kind`, and each of its parents as a folder. Returns the reason
    /// when it collides with something taken before.
    pub fn take(&mut self, parts: &[String], kind: Kind) -> Result<(), String> {
        for end in 1..=parts.len() {
            let path = parts[..end].join("/");
            let this = if end == parts.len() {
                kind
            } else {
                Kind::Folder
            };
            let folded = path.to_lowercase();
            match self.by_folded.get(&folded) {
                None => {
                    self.by_folded.insert(folded, (path, this));
                }
                Some((seen, seen_kind)) => {
                    if *seen != path {
                        return Err(format!("its name collides with '{seen}' ignoring case"));
                    }
                    match (seen_kind, this) {
                        // A folder named twice, or after its contents: harmless.
                        (Kind::Folder, Kind::Folder) => {}
                        (Kind::File, Kind::File) if end == parts.len() => {
                            return Err("it appears twice in the archive".into())
                        }
                        (Kind::File, _) => {
                            return Err(format!("'{seen}' is a file, not a folder"));
                        }
                        (Kind::Folder, Kind::File) => {
                            return Err(format!("'{seen}' is a folder, not a file"));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_plain_components() {
        assert_eq!(check("a/b.go").unwrap(), ["a", "b.go"]);
        assert_eq!(check("./a//b.go").unwrap(), ["a", "b.go"]);
        assert_eq!(check("dir/").unwrap(), ["dir"]);
        assert_eq!(check("a\\b.go").unwrap(), ["a", "b.go"]);
    }

    #[test]
    fn escaping_names_are_refused() {
        for (name, reason) in [
            ("/etc/passwd", "absolute"),
            ("\\evil", "absolute"),
            ("C:/x", "drive letter"),
            ("c:x", "drive letter"),
            ("../x", "'..'"),
            ("a/../../x", "'..'"),
            ("a\\..\\x", "'..'"),
            ("", "empty"),
            ("./", "no file name"),
            ("a\nb", "control"),
            ("a\0b", "control"),
        ] {
            let refused = check(name).expect_err(name);
            assert!(refused.contains(reason), "{name}: {refused}");
        }
    }

    fn take(taken: &mut Taken, name: &str, kind: Kind) -> Result<(), String> {
        taken.take(&check(name).unwrap(), kind)
    }

    #[test]
    fn collisions_are_refused() {
        let mut taken = Taken::default();
        take(&mut taken, "src/", Kind::Folder).unwrap();
        take(&mut taken, "src/main.go", Kind::File).unwrap();
        take(&mut taken, "src/", Kind::Folder).unwrap();
        take(&mut taken, "src/util/x.go", Kind::File).unwrap();
        let twice = take(&mut taken, "src/main.go", Kind::File).unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
        let case = take(&mut taken, "SRC/Main.go", Kind::File).unwrap_err();
        assert!(case.contains("ignoring case"), "{case}");
        let under_file = take(&mut taken, "src/main.go/x", Kind::File).unwrap_err();
        assert!(under_file.contains("is a file"), "{under_file}");
        let over_folder = take(&mut taken, "src/util", Kind::File).unwrap_err();
        assert!(over_folder.contains("is a folder"), "{over_folder}");
    }
}
