//! The validated domain model: what a request means once a transport has parsed it, what
//! a run returns, and the one error type. Nothing here knows about HTTP, gRPC or JSON
//! wire shapes.

pub mod assign;
pub mod context;
pub mod document;
pub mod error;
pub mod matrix;
pub mod names;
pub mod params;
pub mod request;
pub mod response;
pub mod run;

pub use assign::{AssignInput, AssignResponse, Assignment, MAX_ASSIGN_ITEMS};
pub use context::{Cancelled, DeviceKind, ProgressEvent, RunContext};
pub use document::DocumentRecord;
pub use error::{ApiError, ApiResult, ErrorCode};
pub use matrix::Matrix;
pub use names::{Scope, validate_name};
pub use params::{ParamMap, ParamValue};
pub use request::{
    Algorithm, AttributeAggregation, AttributeGroupingRequest, Caller, ExecuteInput,
    ExecuteRequest, LabelingProvider, LabelingRequest,
};
pub use response::{Centroid, DeviceInfo, ExecuteResponse, LabelingFailure, Member, Metrics};
pub use run::{
    PlacementRecord, RunError, RunProgress, RunRecord, RunRequestRecord, RunState, RunStatus,
    RunView,
};
