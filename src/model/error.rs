//! The one error type the transports see. Every layer below converts its own typed error
//! into this, and `api/` maps it once to an HTTP status and once to a gRPC code.

use std::fmt;

/// The public error codes of DESIGN §1 (the `error.code` string of the JSON body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidParameter,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Unimplemented,
    DeadlineExceeded,
    Cancelled,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidParameter,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unimplemented,
        ErrorCode::DeadlineExceeded,
        ErrorCode::Cancelled,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unimplemented => "unimplemented",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A request-level failure: what went wrong, in words a caller can act on, and which
/// request field it concerns (a dotted path such as `config.algorithm_params.eps`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    /// Seconds the caller should wait before retrying (`rate_limited` only).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: field.map(str::to_owned),
            retry_after_s: None,
        }
    }
    pub fn invalid_request(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, Some(field), message)
    }
    pub fn invalid_parameter(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, Some(field), message)
    }
    pub fn not_found(field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, field, message)
    }
    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, field, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, None, message)
    }
    pub fn permission_denied(field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, field, message)
    }
    pub fn payload_too_large(field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, field, message)
    }
    pub fn unimplemented(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unimplemented, Some(field), message)
    }
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Cancelled, None, message)
    }
    pub fn rate_limited(retry_after_s: u64, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::RateLimited, None, message);
        e.retry_after_s = Some(retry_after_s);
        e
    }
    /// A server-side fault. The detail goes to the log; the caller gets a generic message
    /// so that storage paths or internals do not leak.
    pub fn internal(detail: impl fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorCode::Internal,
            None,
            "internal error; the server log has the details",
        )
    }

    /// Prefix the field path, so that a validator of a sub-object can report `eps` and the
    /// caller sees `config.algorithm_params.eps`.
    pub fn under(mut self, parent: &str) -> Self {
        self.field = Some(match self.field.take() {
            Some(f) if !f.is_empty() => format!("{parent}.{f}"),
            _ => parent.to_owned(),
        });
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}", field, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;
