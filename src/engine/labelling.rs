//! Labels for the clusters of a run (`llm_labeling`): the members' texts go into a corpus
//! cluster by cluster, the members nearest each centre are its representatives, and the
//! labeller (offline, or the configured OpenAI-compatible provider) names the clusters.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::labeling::{self, CorpusBuilder, LabelingOptions, Labels, Provider};
use crate::model::{ApiError, ApiResult, LabelingProvider, LabelingRequest};

/// The provider a request gets: `offline` always works; `openai` only where the server
/// has one configured; no provider means the server's.
pub fn provider_for(req: &LabelingRequest, configured: &Provider) -> ApiResult<Provider> {
    match (req.provider, configured) {
        (LabelingProvider::Offline, _) => Ok(Provider::Offline),
        (LabelingProvider::ServerDefault, p)
        | (LabelingProvider::OpenAi, p @ Provider::OpenAi(_)) => Ok(p.clone()),
        (LabelingProvider::OpenAi, Provider::Offline) => Err(ApiError::invalid_parameter(
            "config.llm_labeling.provider",
            "this server has no OpenAI-compatible provider configured (--llm-base-url); \
             omit provider or use \"offline\"",
        )),
    }
}

/// The provider's name in the run record.
pub fn provider_name(provider: &Provider) -> &'static str {
    match provider {
        Provider::Offline => "offline",
        Provider::OpenAi(_) => "openai",
    }
}

/// The model a request's labels come from (None for the offline labeller).
pub fn model_used(provider: &Provider, asked: Option<&str>) -> Option<String> {
    match provider {
        Provider::Offline => None,
        Provider::OpenAi(c) => Some(asked.unwrap_or(&c.default_model).to_owned()),
    }
}

pub fn options(req: &LabelingRequest) -> LabelingOptions {
    LabelingOptions {
        include_keywords: req.include_keywords,
        include_summary: req.include_summary,
        model_name: req.model_name.clone(),
    }
}

/// One document's text: every value of every labelling input, in order, space-joined.
fn row_text(texts: &[Vec<Vec<String>>], row: usize) -> String {
    let mut out = String::new();
    for values in texts.iter().filter_map(|attribute| attribute.get(row)) {
        for v in values {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(v);
        }
    }
    out
}

/// A row by its distance to the centre; the heap keeps the farthest on top so that it is
/// the one dropped. Ties go to the earlier row.
#[derive(PartialEq)]
struct Near(f32, usize);

impl Eq for Near {}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// The `keep` members of each cluster nearest its centre, kept as they stream by.
struct Nearest {
    keep: usize,
    heaps: Vec<BinaryHeap<Near>>,
}

impl Nearest {
    fn new(n_clusters: usize, keep: usize) -> Self {
        Nearest {
            keep,
            heaps: (0..n_clusters).map(|_| BinaryHeap::new()).collect(),
        }
    }

    /// Without a centre (distance None) every member is equally near: the first stay.
    fn offer(&mut self, cluster: usize, row: usize, distance: Option<f32>) {
        if let Some(heap) = self.heaps.get_mut(cluster) {
            heap.push(Near(distance.unwrap_or(0.0), row));
            if heap.len() > self.keep {
                heap.pop();
            }
        }
    }

    /// Each cluster's rows, nearest first.
    fn into_rows(self) -> Vec<Vec<usize>> {
        self.heaps
            .into_iter()
            .map(|h| h.into_sorted_vec().into_iter().map(|n| n.1).collect())
            .collect()
    }
}

/// Build the corpus of `n_clusters` clusters from `(cluster, row, distance)` memberships
/// (distance None: no centre, so the first members represent the cluster). One pass; the
/// texts themselves are not kept beyond the representatives.
pub fn corpus(
    n_clusters: usize,
    memberships: impl Iterator<Item = (usize, usize, Option<f32>)>,
    texts: &[Vec<Vec<String>>],
) -> labeling::Corpus {
    let mut builder = CorpusBuilder::new(n_clusters);
    // The corpus keeps (and cuts) at most this many; only those texts are built twice.
    let mut nearest = Nearest::new(n_clusters, labeling::MAX_REPRESENTATIVES);
    for (cluster, row, distance) in memberships.filter(|m| m.0 < n_clusters) {
        let text = row_text(texts, row);
        if text.trim().is_empty() {
            continue;
        }
        builder.add(cluster, &text);
        nearest.offer(cluster, row, distance);
    }
    for (cluster, rows) in nearest.into_rows().into_iter().enumerate() {
        let representatives = rows.into_iter().map(|row| row_text(texts, row)).collect();
        builder.set_representatives(cluster, representatives);
    }
    builder.finish()
}

/// Label the corpus; never fails (a provider's failures are in `Labels::errors`).
pub async fn label(
    corpus: &labeling::Corpus,
    req: &LabelingRequest,
    provider: &Provider,
    cancel: &tokio_util::sync::CancellationToken,
) -> Labels {
    labeling::label(corpus, &options(req), provider, cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documents_text_joins_every_input_and_list_value_in_order() {
        let t = vec![
            vec![vec!["Red".to_owned(), "shoe".to_owned()], vec![]],
            vec![vec!["size 9".to_owned()], vec!["x".to_owned()]],
        ];
        assert_eq!(row_text(&t, 0), "Red shoe size 9");
        assert_eq!(row_text(&t, 1), "x");
    }

    #[test]
    fn representatives_are_the_members_nearest_the_centre() {
        let mut n = Nearest::new(2, 3);
        for (c, row, d) in [
            (0, 0, Some(9.0)),
            (0, 1, Some(1.0)),
            (0, 2, Some(5.0)),
            (0, 3, Some(0.5)),
            (1, 4, None),
            (1, 5, None),
            (7, 6, Some(0.0)),
        ] {
            n.offer(c, row, d);
        }
        assert_eq!(n.into_rows(), vec![vec![3, 1, 2], vec![4, 5]]);
    }

    #[test]
    fn openai_is_refused_where_the_server_has_no_provider() {
        let req = LabelingRequest {
            provider: LabelingProvider::OpenAi,
            model_name: None,
            include_keywords: true,
            include_summary: true,
            inputs: vec!["text".into()],
            inputs_given: false,
        };
        let e = provider_for(&req, &Provider::Offline).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("config.llm_labeling.provider"));
        let offline = LabelingRequest {
            provider: LabelingProvider::ServerDefault,
            ..req
        };
        assert!(matches!(
            provider_for(&offline, &Provider::Offline),
            Ok(Provider::Offline)
        ));
    }
}
