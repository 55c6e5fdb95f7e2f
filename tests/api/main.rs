//! Integration tests: the real server on ephemeral ports, called over REST (reqwest),
//! gRPC (tonic) and grpcurl.

mod algorithms;
mod attributes;
mod auth;
mod background;
mod collections;
mod density;
mod errors;
mod execute;
mod gpu;
mod grpcurl;
mod harness;
mod hostile;
mod housekeeping;
mod isolation;
mod labelling;
mod lifecycle;
mod limits;
mod observability;
mod openapi;
mod placement;
mod runs;
mod s3;
mod streaming;
mod tls;
