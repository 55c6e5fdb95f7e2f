//! Names that become object-store path segments (organisation, namespace, collection and
//! run ids). They are checked once, here, so no request can climb out of its prefix.

use super::error::{ApiError, ApiResult};

pub const MAX_NAME_LEN: usize = 128;

/// Letters, digits, `_`, `-` and `.`, not starting with `.` or `_` (reserved for our own
/// prefixes such as `_staging`), at most 128 bytes.
pub fn validate_name(field: &str, value: &str) -> ApiResult<()> {
    if value.is_empty() {
        return Err(ApiError::invalid_request(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(ApiError::invalid_request(
            field,
            format!("must be at most {MAX_NAME_LEN} bytes"),
        ));
    }
    if value.contains("..") || value.contains('/') || value.contains('\\') {
        return Err(ApiError::invalid_request(
            field,
            format!("{value:?} must not contain '..', '/' or '\\'"),
        ));
    }
    if value.starts_with('.') || value.starts_with('_') {
        return Err(ApiError::invalid_request(
            field,
            format!("{value:?} must not start with '.' or '_'"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(ApiError::invalid_request(
            field,
            format!("{value:?} contains {c:?}; use letters, digits, '_', '-' and '.'"),
        ));
    }
    Ok(())
}

/// The organisation and namespace a request acts in, both validated names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    org: String,
    namespace: String,
}

impl Scope {
    pub fn new(org: &str, namespace: &str) -> ApiResult<Self> {
        validate_name("internal_id", org)?;
        validate_name("X-Namespace", namespace)?;
        Ok(Scope {
            org: org.to_owned(),
            namespace: namespace.to_owned(),
        })
    }
    pub fn org(&self) -> &str {
        &self.org
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_traversal_and_separators() {
        for bad in [
            "..", "a/b", "a..b", "../x", ".hidden", "_staging", "a b", "",
        ] {
            assert!(validate_name("collection_ids[0]", bad).is_err(), "{bad}");
        }
        for good in ["col_products_v1", "production", "ns-1.2", "int_abc123"] {
            assert!(validate_name("x", good).is_ok(), "{good}");
        }
    }
}
