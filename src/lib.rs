//! clusterd: a clustering service. `api/` speaks gRPC and REST, `engine/` runs the
//! pipeline over domain types from `model/`, `store/` holds collections and results,
//! `algorithms/` and `metrics/` do the numeric work, `gpu/` owns the device.

pub mod algorithms;
pub mod api;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod gpu;
pub mod labeling;
pub mod metrics;
pub mod model;
#[cfg(test)]
mod reference_fixtures;
pub mod store;
pub mod telemetry;
