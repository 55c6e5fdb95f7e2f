//! API keys: `Authorization: Bearer <key>` plus `X-Namespace`, checked the same way for
//! REST headers and gRPC metadata. Keys come from a TOML file (operator contract); without
//! one the server runs in single-user development mode.

use std::path::Path;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::model::{ApiError, ApiResult, Caller, validate_name};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    key: String,
    org: String,
    namespaces: Vec<String>,
}

// Keys never reach a log line, not even through Debug.
impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("key", &"<redacted>")
            .field("org", &self.org)
            .field("namespaces", &self.namespaces)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read API key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("API key file {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

/// The org used in development mode.
pub const DEV_ORG: &str = "default";

#[derive(Debug, Clone)]
pub enum Authenticator {
    /// Any bearer token (or none) acts as org `default` in any namespace.
    Development,
    Keys(Vec<KeyEntryChecked>),
}

#[derive(Clone)]
pub struct KeyEntryChecked {
    key: Vec<u8>,
    org: String,
    namespaces: Vec<String>,
}

impl std::fmt::Debug for KeyEntryChecked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(org={}, namespaces={:?})", self.org, self.namespaces)
    }
}

impl Authenticator {
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| KeyFileError::Invalid {
            path: shown,
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.keys.is_empty() {
            return Err("no [[keys]] entries".into());
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        for (i, k) in file.keys.into_iter().enumerate() {
            if k.key.len() < 8 {
                return Err(format!("keys[{i}].key must be at least 8 characters"));
            }
            validate_name("org", &k.org).map_err(|e| format!("keys[{i}].{e}"))?;
            if k.namespaces.is_empty() {
                return Err(format!("keys[{i}].namespaces must not be empty"));
            }
            for ns in &k.namespaces {
                if ns != "*" {
                    validate_name("namespaces", ns).map_err(|e| format!("keys[{i}].{e}"))?;
                }
            }
            keys.push(KeyEntryChecked {
                key: k.key.into_bytes(),
                org: k.org,
                namespaces: k.namespaces,
            });
        }
        Ok(Authenticator::Keys(keys))
    }

    pub fn is_development(&self) -> bool {
        matches!(self, Authenticator::Development)
    }

    /// Establish the caller from the `authorization` and `x-namespace` values.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        namespace: Option<&str>,
    ) -> ApiResult<Caller> {
        let token = match authorization {
            Some(v) => Some(bearer_token(v)?),
            None => None,
        };
        let org = match self {
            Authenticator::Development => DEV_ORG.to_owned(),
            Authenticator::Keys(keys) => {
                let token = token.ok_or_else(|| {
                    ApiError::unauthenticated("missing Authorization: Bearer <key>")
                })?;
                let entry = find_key(keys, token.as_bytes())
                    .ok_or_else(|| ApiError::unauthenticated("unknown API key"))?;
                let ns = require_namespace(namespace)?;
                if !entry.namespaces.iter().any(|n| n == "*" || n == ns) {
                    return Err(ApiError::permission_denied(
                        Some("X-Namespace"),
                        format!("this API key may not use namespace {ns:?}"),
                    ));
                }
                entry.org.clone()
            }
        };
        let namespace = require_namespace(namespace)?.to_owned();
        Ok(Caller { org, namespace })
    }
}

fn require_namespace(namespace: Option<&str>) -> ApiResult<&str> {
    let ns = namespace
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_request("X-Namespace", "the X-Namespace header is required")
        })?;
    validate_name("X-Namespace", ns)?;
    Ok(ns)
}

fn bearer_token(value: &str) -> ApiResult<&str> {
    let mut parts = value.trim().splitn(2, ' ');
    match (parts.next(), parts.next()) {
        (Some(scheme), Some(token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(ApiError::unauthenticated(
            "the Authorization header must be 'Bearer <key>'",
        )),
    }
}

/// Compare against every key in constant time, so timing reveals neither which key
/// matched nor how much of a guess was right.
fn find_key<'a>(keys: &'a [KeyEntryChecked], token: &[u8]) -> Option<&'a KeyEntryChecked> {
    let mut found = None;
    for k in keys {
        if bool::from(k.key.as_slice().ct_eq(token)) {
            found = Some(k);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorCode;

    const FILE: &str = r#"
[[keys]]
key = "sk_test_xyz789"
org = "int_abc123"
namespaces = ["production"]

[[keys]]
key = "sk_test_other1"
org = "int_other"
namespaces = ["*"]
"#;

    #[test]
    fn key_acts_in_its_org_and_listed_namespaces() {
        let a = Authenticator::from_toml(FILE).unwrap();
        let c = a
            .authenticate(Some("Bearer sk_test_xyz789"), Some("production"))
            .unwrap();
        assert_eq!(
            (c.org.as_str(), c.namespace.as_str()),
            ("int_abc123", "production")
        );
        let e = a
            .authenticate(Some("Bearer sk_test_xyz789"), Some("staging"))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        let c = a
            .authenticate(Some("Bearer sk_test_other1"), Some("anything"))
            .unwrap();
        assert_eq!(c.org, "int_other");
    }

    #[test]
    fn unknown_or_missing_key_is_unauthenticated() {
        let a = Authenticator::from_toml(FILE).unwrap();
        for auth in [None, Some("Bearer nope_nope_nope"), Some("Basic abc")] {
            let e = a.authenticate(auth, Some("production")).unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthenticated, "{auth:?}");
        }
    }

    #[test]
    fn a_key_differing_only_in_its_last_byte_or_cut_short_is_rejected() {
        let a = Authenticator::from_toml(FILE).unwrap();
        for near_miss in [
            "sk_test_xyz78",
            "sk_test_xyz780",
            "sk_test_xyz7890",
            "sk_test",
        ] {
            let e = a
                .authenticate(Some(&format!("Bearer {near_miss}")), Some("production"))
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthenticated, "{near_miss:?}");
        }
        // The comparison itself, below the header parsing (which trims whitespace).
        let Authenticator::Keys(keys) = &a else {
            panic!("keys expected")
        };
        assert!(find_key(keys, b"sk_test_xyz789").is_some());
        for near_miss in [
            &b"sk_test_xyz78"[..],
            b"sk_test_xyz780",
            b"sk_test_xyz78\x00",
            b"sk_test_xyz789\x00",
            b"",
        ] {
            assert!(find_key(keys, near_miss).is_none(), "{near_miss:?}");
        }
    }

    #[test]
    fn development_mode_accepts_any_token() {
        let c = Authenticator::Development
            .authenticate(None, Some("ns1"))
            .unwrap();
        assert_eq!(c.org, DEV_ORG);
    }

    #[test]
    fn debug_output_hides_keys() {
        let a = Authenticator::from_toml(FILE).unwrap();
        assert!(!format!("{a:?}").contains("sk_test"));
    }
}
