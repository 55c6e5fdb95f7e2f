//! A document as uploaded through JSON (REST) or the gRPC upsert stream.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRecord {
    pub document_id: String,
    /// Vector columns: name -> values.
    pub vectors: BTreeMap<String, Vec<f32>>,
    /// Every other column; objects become nested struct columns addressed by dotted paths.
    pub attributes: BTreeMap<String, serde_json::Value>,
}
