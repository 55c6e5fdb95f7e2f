//! Cluster labelling (offline class-based TF-IDF keywords, OpenAI-compatible providers).
//! Not built yet: requests with `llm_labeling.enabled` are refused with `unimplemented`
//! (see `model::request`).
