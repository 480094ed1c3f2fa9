//! The server's own credentials (`--token`, `--jwt-secret`) kept where no run can read
//! them: read from `--token-file` / `--jwt-secret-file` at start, and, when given on the
//! command line anyway, wiped from the process's argument memory, which every local user
//! and every run can read through `/proc/PID/cmdline`. Owns nothing else: checking a
//! credential is `http::auth`'s.

use crate::config::Config;
use crate::platform;
use std::path::Path;

/// Reads the credential files into `config`, and hides credentials that came on the
/// command line. Fails with a message naming the flag when a file cannot be used.
pub fn load(mut config: Config) -> Result<Config, String> {
    if let Some(path) = config.token_file.clone() {
        config.token = Some(read("token-file", &path)?);
    }
    if let Some(path) = config.jwt_secret_file.clone() {
        config.jwt_secret = Some(read("jwt-secret-file", &path)?);
    }
    let on_command_line: Vec<&str> = [&config.token, &config.jwt_secret]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .filter(|secret| std::env::args().skip(1).any(|arg| arg.contains(secret)))
        .collect();
    if !on_command_line.is_empty() {
        let hidden = platform::hide_arguments(&on_command_line);
        log::warn!(
            "a credential was given on the command line, where local users can read it{}; \
             prefer --token-file / --jwt-secret-file or GOLAMBDA_TOKEN / GOLAMBDA_JWT_SECRET",
            if hidden {
                " (this process's copy is wiped; the shell's history may keep it)"
            } else {
                ""
            }
        );
    }
    Ok(config)
}

/// A credential file's contents without the line break at its end.
fn read(flag: &str, path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("--{flag}: cannot read {}: {err}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']).to_string();
    if secret.is_empty() {
        return Err(format!("--{flag}: {} is empty", path.display()));
    }
    if platform::others_may_read(path) {
        log::warn!(
            "--{flag}: {} can be read by other users; make it readable by the server's user only (chmod 600)",
            path.display()
        );
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_file_is_read_without_its_line_break() {
        let dir = std::env::temp_dir().join(format!("golambda-cred-{}", crate::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(read("token-file", &file).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        assert!(read("token-file", &file).unwrap_err().contains("empty"));
        let missing = read("jwt-secret-file", &dir.join("none")).unwrap_err();
        assert!(missing.contains("--jwt-secret-file"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
