//! Access control: a bearer credential (`--token`, compared in constant time, or an HS256
//! JWT signed with `--jwt-secret`, `alg` pinned, `exp` and `nbf` checked with 60 s leeway)
//! guards the admin API, and invocations too with `--invoke-auth`. `GET /` stays open.

use super::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: i64 = 60;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `GET /`: always open.
    Open,
    /// Running a function: open unless `--invoke-auth`.
    Invoke,
    /// `PUT /register`, `/functions…`, `/metrics`.
    Admin,
}

impl Access {
    /// The access a path needs, from its first segment.
    pub fn of(path: &str) -> Access {
        let first = path
            .trim_start_matches('/')
            .split(['/', '?'])
            .next()
            .unwrap_or("");
        match first {
            "" | "health" | "healthz" => Access::Open,
            "register" | "functions" | "metrics" | "runtimes" => Access::Admin,
            _ => Access::Invoke,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Auth {
    token: Option<String>,
    jwt_secret: Option<Vec<u8>>,
    invoke_auth: bool,
    /// A JWT without `exp` is refused (it would never expire), unless
    /// `--jwt-allow-no-exp`.
    require_exp: bool,
}

impl Auth {
    pub fn new(
        token: Option<String>,
        jwt_secret: Option<String>,
        invoke_auth: bool,
        require_exp: bool,
    ) -> Auth {
        Auth {
            token: token.filter(|t| !t.is_empty()),
            jwt_secret: jwt_secret.filter(|s| !s.is_empty()).map(String::into_bytes),
            invoke_auth,
            require_exp,
        }
    }

    /// True when some credential is configured.
    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.jwt_secret.is_some()
    }

    /// Checks the `Authorization` header value (if any) for a route; `now` is Unix seconds.
    pub fn check(
        &self,
        access: Access,
        authorization: Option<&str>,
        now: i64,
    ) -> Result<(), ApiError> {
        let needed = match access {
            Access::Open => false,
            Access::Invoke => self.invoke_auth,
            Access::Admin => true,
        };
        if !needed || !self.enabled() {
            return Ok(());
        }
        let credential = authorization
            .and_then(|value| {
                let (scheme, rest) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or(ApiError::Unauthorized {
                reason: "send Authorization: Bearer <token>",
            })?;
        if let Some(token) = &self.token {
            if constant_time_eq(credential.as_bytes(), token.as_bytes()) {
                return Ok(());
            }
        }
        if let Some(secret) = &self.jwt_secret {
            if credential.matches('.').count() == 2 {
                return verify_jwt(credential, secret, now, self.require_exp);
            }
        }
        Err(ApiError::Unauthorized {
            reason: "the bearer credential is not valid",
        })
    }
}

/// Compares without stopping at the first difference (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: a key longer than a block is hashed first.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// JOSE header parameters this server understands, the only ones a `crit` may name
/// (RFC 7515 4.1.11): none.
const UNDERSTOOD_CRITICAL: [&str; 0] = [];

fn verify_jwt(token: &str, secret: &[u8], now: i64, require_exp: bool) -> Result<(), ApiError> {
    let invalid = |reason| ApiError::Unauthorized { reason };
    let mut parts = token.splitn(3, '.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("the JWT is not three dot-separated parts"));
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(invalid("the JWT header is not base64url JSON"))?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(invalid("only HS256 JWTs are accepted"));
    }
    if let Some(crit) = header.get("crit") {
        let understood = crit.as_array().is_some_and(|names| {
            !names.is_empty()
                && names
                    .iter()
                    .all(|n| n.as_str().is_some_and(|n| UNDERSTOOD_CRITICAL.contains(&n)))
        });
        if !understood {
            return Err(invalid(
                "the JWT names critical header parameters (crit) this server does not understand",
            ));
        }
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| invalid("the JWT signature is not base64url"))?;
    let signed = &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];
    if !constant_time_eq(&hmac_sha256(secret, signed.as_bytes()), &signature) {
        return Err(invalid("the JWT signature does not match"));
    }
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(invalid("the JWT payload is not base64url JSON"))?;
    let time = |claim: &str| -> Result<Option<i64>, ApiError> {
        match claims.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|t| Some(t as i64))
                .ok_or(invalid("a JWT time claim is not a number")),
        }
    };
    match time("exp")? {
        Some(exp) if now > exp + LEEWAY_SECONDS => return Err(invalid("the JWT has expired")),
        None if require_exp => {
            return Err(invalid(
                "the JWT has no exp (it would never expire); see --jwt-allow-no-exp",
            ))
        }
        _ => {}
    }
    if time("nbf")?.is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err(invalid("the JWT is not valid yet"));
    }
    Ok(())
}

/// Signs claims as an HS256 JWT (used by tests and by operators' scripts through tests).
pub fn sign_jwt(claims: &Value, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(secret, signed.as_bytes()));
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn auth() -> Auth {
        Auth::new(Some("tok".into()), Some("secret".into()), false, true)
    }

    fn bearer(credential: &str) -> String {
        format!("Bearer {credential}")
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn routes_and_tokens() {
        let a = auth();
        assert!(a.check(Access::Open, None, NOW).is_ok());
        assert!(a.check(Access::Invoke, None, NOW).is_ok());
        assert!(a.check(Access::Admin, None, NOW).is_err());
        assert!(a.check(Access::Admin, Some(&bearer("tok")), NOW).is_ok());
        assert!(a.check(Access::Admin, Some("bearer tok"), NOW).is_ok());
        assert!(a.check(Access::Admin, Some(&bearer("tok2")), NOW).is_err());
        assert!(a.check(Access::Admin, Some("Basic dG9r"), NOW).is_err());
        let strict = Auth::new(Some("tok".into()), None, true, true);
        assert!(strict.check(Access::Invoke, None, NOW).is_err());
        assert!(Auth::default().check(Access::Admin, None, NOW).is_ok());
    }

    #[test]
    fn jwts() {
        let a = auth();
        let ok = sign_jwt(&json!({"sub": "ci", "exp": NOW + 60}), b"secret");
        assert!(a.check(Access::Admin, Some(&bearer(&ok)), NOW).is_ok());
        let leeway = sign_jwt(&json!({"exp": NOW - 30}), b"secret");
        assert!(a.check(Access::Admin, Some(&bearer(&leeway)), NOW).is_ok());
        for bad in [
            sign_jwt(&json!({"exp": NOW - 61}), b"secret"),
            sign_jwt(&json!({"nbf": NOW + 61}), b"secret"),
            sign_jwt(&json!({"exp": NOW + 60}), b"other secret"),
            sign_jwt(&json!({"exp": "soon"}), b"secret"),
        ] {
            assert!(
                a.check(Access::Admin, Some(&bearer(&bad)), NOW).is_err(),
                "{bad}"
            );
        }
        // alg none: a header claiming none and an empty signature.
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(json!({"exp": NOW + 60}).to_string());
        let none = format!("{none_header}.{payload}.");
        assert!(a.check(Access::Admin, Some(&bearer(&none)), NOW).is_err());
        // alg HS512 with a valid-looking HS256 signature is refused by name.
        let hs512 = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512"}"#);
        let signed = format!("{hs512}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(b"secret", signed.as_bytes()));
        let other = format!("{signed}.{sig}");
        assert!(a.check(Access::Admin, Some(&bearer(&other)), NOW).is_err());
        for junk in ["a.b.c", "..", "x", "....", "é.é.é"] {
            assert!(a.check(Access::Admin, Some(&bearer(junk)), NOW).is_err());
        }
    }

    #[test]
    fn a_jwt_must_expire_and_name_no_critical_extension() {
        let a = auth();
        let forever = sign_jwt(&json!({"sub": "ci"}), b"secret");
        let err = a
            .check(Access::Admin, Some(&bearer(&forever)), NOW)
            .unwrap_err();
        assert!(err.to_string().contains("exp"), "{err}");
        let lenient = Auth::new(None, Some("secret".into()), false, false);
        assert!(lenient
            .check(Access::Admin, Some(&bearer(&forever)), NOW)
            .is_ok());
        let payload = URL_SAFE_NO_PAD.encode(json!({"exp": NOW + 60}).to_string());
        for header in [
            json!({"alg": "HS256", "crit": ["x"], "x": 1}),
            json!({"alg": "HS256", "crit": []}),
            json!({"alg": "HS256", "crit": "x"}),
        ] {
            let signed = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header.to_string()));
            let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(b"secret", signed.as_bytes()));
            let token = format!("{signed}.{sig}");
            let err = a
                .check(Access::Admin, Some(&bearer(&token)), NOW)
                .unwrap_err();
            assert!(err.to_string().contains("crit"), "{header}: {err}");
        }
    }
}
