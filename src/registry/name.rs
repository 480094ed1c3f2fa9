//! Function names: what the contract allows (`^[a-z0-9][a-z0-9_-]{0,63}$`, no Windows device
//! name, no reserved route word). A valid name is also a safe file name on every OS.

/// Route words that can never be function names.
const RESERVED: &[&str] = &[
    "register",
    "functions",
    "metrics",
    "health",
    "healthz",
    "async",
    "ui",
    "static",
    "api",
    "openapi.json",
    "favicon.ico",
];

/// Why a name was refused, as a phrase that completes "name ... ".
pub fn check_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 64 {
        return Err("must be 1 to 64 characters long".into());
    }
    if !(bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit()) {
        return Err("must start with a lowercase letter or a digit".into());
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
    {
        return Err("may hold only lowercase letters, digits, '_' and '-'".into());
    }
    if is_device_name(name) {
        return Err("is a Windows device name".into());
    }
    if is_reserved(name) {
        return Err("is a reserved route word".into());
    }
    Ok(())
}

/// True for names the router keeps for itself.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

fn is_device_name(name: &str) -> bool {
    match name {
        "con" | "nul" | "aux" | "prn" => true,
        _ => {
            let b = name.as_bytes();
            b.len() == 4
                && (name.starts_with("com") || name.starts_with("lpt"))
                && (b'1'..=b'9').contains(&b[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn good_names() {
        for name in [
            "hello",
            "a",
            "0day",
            "my_func-2",
            &"x".repeat(64),
            "com0",
            "console",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn bad_names() {
        for name in [
            "",
            "Hello",
            "-x",
            "_x",
            "a/b",
            "..",
            "a.b",
            "héllo",
            "a b",
            "con",
            "nul",
            "com1",
            "lpt9",
            "register",
            "functions",
            "metrics",
            "healthz",
            &"x".repeat(65),
        ] {
            assert!(check_name(name).is_err(), "{name:?} should be refused");
        }
    }
}
