//! `ApiError` -> `tonic::Status`, once. The message is "field: message"; the code and
//! field are also in metadata (`x-error-code`, `x-error-field`). (The binary status
//! details must be a `google.rpc.Status`; clients such as grpcurl reject anything else.)

use tonic::{Code, Status};

use crate::model::{ApiError, ErrorCode};

pub fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidRequest | ErrorCode::InvalidParameter => Code::InvalidArgument,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::Conflict => Code::FailedPrecondition,
        ErrorCode::PayloadTooLarge | ErrorCode::RateLimited => Code::ResourceExhausted,
        ErrorCode::Unimplemented => Code::Unimplemented,
        ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorCode::Cancelled => Code::Cancelled,
        ErrorCode::Internal => Code::Internal,
    }
}

pub fn to_status(e: ApiError) -> Status {
    let mut status = Status::new(grpc_code(e.code), e.to_string());
    let md = status.metadata_mut();
    if let Ok(v) = e.code.as_str().parse() {
        md.insert("x-error-code", v);
    }
    if let Some(Ok(v)) = e.field.as_deref().map(str::parse) {
        md.insert("x-error-field", v);
    }
    if let Some(Ok(v)) = e.retry_after_s.map(|s| s.to_string().parse()) {
        md.insert("retry-after", v);
    }
    status
}
