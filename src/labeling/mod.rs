//! Cluster labelling: offline class-based TF-IDF keywords ([`offline_labels`]) and an
//! OpenAI-compatible chat-completions provider ([`label`]) that falls back to the offline
//! label of any cluster it cannot label.
//!
//! Knows nothing of the wire: the engine builds a [`Corpus`] while streaming rows and maps
//! [`Labels`] into its responses.

mod openai;
mod tfidf;

pub use openai::{OpenAiConfig, label};
pub use tfidf::{
    Corpus, CorpusBuilder, MAX_REPRESENTATIVE_CHARS, MAX_REPRESENTATIVES, NO_TEXT_LABEL,
    TOP_KEYWORDS, offline_labels,
};

/// What the run asks for (validated by the engine from `config.llm_labeling`).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelingOptions {
    pub include_keywords: bool,
    pub include_summary: bool,
    /// Model for the OpenAI provider; `None` uses the provider's default model.
    pub model_name: Option<String>,
}

impl Default for LabelingOptions {
    fn default() -> Self {
        Self {
            include_keywords: true,
            include_summary: true,
            model_name: None,
        }
    }
}

/// Server-side provider configuration (from CLI/env, never from a request, so a client
/// cannot make the server call arbitrary URLs).
#[derive(Debug, Clone)]
pub enum Provider {
    Offline,
    OpenAi(OpenAiConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterLabel {
    /// Short name: the top keywords joined by " · " (offline) or the model's label.
    pub label: String,
    /// Empty when `include_keywords` is false.
    pub keywords: Vec<String>,
    /// `None` when `include_summary` is false (or the offline summary has nothing to quote).
    pub summary: Option<String>,
}

/// A cluster the provider could not label (it keeps its offline label).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelingError {
    pub cluster: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Labels {
    /// Index = cluster.
    pub labels: Vec<ClusterLabel>,
    /// At most one per cluster, sorted by cluster.
    pub errors: Vec<LabelingError>,
}

#[cfg(test)]
mod tests;
