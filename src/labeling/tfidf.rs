//! Offline labels: class-based TF-IDF (BERTopic's c-TF-IDF) over the clusters' texts.
//!
//! The corpus is accumulated row by row: a term → id map plus one sparse count map per
//! cluster, so memory is O(vocabulary × clusters) whatever the total text size.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use super::{ClusterLabel, LabelingOptions};

/// Keywords kept per cluster.
pub const TOP_KEYWORDS: usize = 10;
/// Keywords joined into the offline label.
const LABEL_KEYWORDS: usize = 3;
/// Label of a cluster none of whose texts has a single token.
pub const NO_TEXT_LABEL: &str = "cluster without text";
/// Representatives kept per cluster (the engine passes the nearest first).
pub const MAX_REPRESENTATIVES: usize = 5;
/// Characters kept of each representative (prompts stay bounded).
pub const MAX_REPRESENTATIVE_CHARS: usize = 1000;
/// Representatives quoted in the offline summary.
const SUMMARY_REPRESENTATIVES: usize = 2;
/// Characters of each representative quoted in the offline summary.
const SUMMARY_CHARS: usize = 200;

/// Compact English stop-word list: function words and the commonest auxiliaries only;
/// content words, even frequent ones, are left to the IDF.
const STOP_WORDS: &str = "\
     about above after again against all also am an and any are as at be because been before \
     being below between both but by can could did do does doing down during each few for \
     from further had has have having he her here hers herself him himself his how if in into \
     is it its itself just me more most my myself no nor not now of off on once only or other \
     our ours ourselves out over own same she should so some such than that the their theirs \
     them themselves then there these they this those through to too under until up very was \
     we were what when where which while who whom why will with would you your yours yourself \
     yourselves";

static STOP_WORD_SET: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| STOP_WORDS.split_whitespace().collect());

fn is_stop_word(token: &str) -> bool {
    STOP_WORD_SET.contains(token)
}

/// Calls `f` with every kept token of `text`: lowercase runs of alphanumeric characters
/// (unicode), at least 2 characters long, not all digits, not a stop word.
pub fn for_each_token(text: &str, mut f: impl FnMut(&str)) {
    let mut token = String::new();
    let mut flush = |token: &mut String| {
        if token.chars().nth(1).is_some()
            && !token.chars().all(|c| c.is_numeric())
            && !is_stop_word(token)
        {
            f(token);
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            token.extend(c.to_lowercase());
        } else if !token.is_empty() {
            flush(&mut token);
        }
    }
    if !token.is_empty() {
        flush(&mut token);
    }
}

/// The clusters of one run, built incrementally by the engine.
#[derive(Debug, Default)]
pub struct CorpusBuilder {
    term_ids: HashMap<String, u32>,
    terms: Vec<String>,
    counts: Vec<HashMap<u32, u64>>,
    representatives: Vec<Vec<String>>,
}

impl CorpusBuilder {
    pub fn new(n_clusters: usize) -> Self {
        Self {
            counts: vec![HashMap::new(); n_clusters],
            representatives: vec![Vec::new(); n_clusters],
            ..Self::default()
        }
    }

    /// A cluster index past the ones announced grows the corpus instead of panicking: the
    /// index comes from the engine, and losing text is worse than an extra cluster.
    fn ensure_cluster(&mut self, cluster: usize) {
        if cluster >= self.counts.len() {
            self.counts.resize_with(cluster + 1, HashMap::new);
            self.representatives.resize_with(cluster + 1, Vec::new);
        }
    }

    /// One document's text for cluster `cluster`. Called once per member row (a row in
    /// several clusters is added once per membership).
    pub fn add(&mut self, cluster: usize, text: &str) {
        self.ensure_cluster(cluster);
        let Self {
            term_ids,
            terms,
            counts,
            ..
        } = self;
        let counts = &mut counts[cluster];
        for_each_token(text, |token| {
            let id = match term_ids.get(token) {
                Some(&id) => id,
                None => {
                    // u32 ids: a vocabulary of 4 billion terms is far beyond any memory
                    // this service is given; saturating keeps it panic-free regardless.
                    let id = u32::try_from(terms.len()).unwrap_or(u32::MAX);
                    terms.push(token.to_owned());
                    term_ids.insert(token.to_owned(), id);
                    id
                }
            };
            *counts.entry(id).or_insert(0) += 1;
        });
    }

    /// Representative texts of a cluster, nearest the centroid first. The first
    /// [`MAX_REPRESENTATIVES`] are kept, each cut to [`MAX_REPRESENTATIVE_CHARS`] characters.
    pub fn set_representatives(&mut self, cluster: usize, texts: Vec<String>) {
        self.ensure_cluster(cluster);
        self.representatives[cluster] = texts
            .into_iter()
            .take(MAX_REPRESENTATIVES)
            .map(|t| truncate_chars(&t, MAX_REPRESENTATIVE_CHARS).to_owned())
            .collect();
    }

    pub fn finish(self) -> Corpus {
        let clusters = self
            .counts
            .into_iter()
            .map(|counts| {
                let mut counts: Vec<(u32, u64)> = counts.into_iter().collect();
                counts.sort_unstable();
                counts
            })
            .collect();
        Corpus {
            terms: self.terms,
            clusters,
            representatives: self.representatives,
        }
    }
}

/// The finished corpus: per-cluster sparse term counts and representatives.
#[derive(Debug, Clone)]
pub struct Corpus {
    terms: Vec<String>,
    /// Per cluster, (term id, count) sorted by id.
    clusters: Vec<Vec<(u32, u64)>>,
    representatives: Vec<Vec<String>>,
}

impl Corpus {
    pub fn n_clusters(&self) -> usize {
        self.clusters.len()
    }

    /// Representatives of `cluster` as kept (empty for an unknown cluster).
    pub fn representatives(&self, cluster: usize) -> &[String] {
        self.representatives.get(cluster).map_or(&[], Vec::as_slice)
    }

    /// Whether `cluster` has neither a token nor a representative (nothing to label).
    pub fn is_empty_cluster(&self, cluster: usize) -> bool {
        self.clusters.get(cluster).is_none_or(Vec::is_empty)
            && self.representatives(cluster).is_empty()
    }

    /// The top `TOP_KEYWORDS` terms of every cluster by c-TF-IDF, best first, ties by term.
    pub fn keywords(&self) -> Vec<Vec<String>> {
        self.keyword_scores()
            .into_iter()
            .map(|scored| scored.into_iter().map(|(term, _)| term).collect())
            .collect()
    }

    /// [`Corpus::keywords`] with their c-TF-IDF scores.
    ///
    /// tf_{t,c} = count of t in c / tokens in c; idf_t = ln(1 + A / f_t) with A the average
    /// tokens per cluster and f_t the count of t over all clusters (BERTopic's c-TF-IDF,
    /// except that BERTopic truncates A to an integer; a float A keeps tiny corpora, with
    /// fewer tokens than clusters, from scoring every term 0).
    pub fn keyword_scores(&self) -> Vec<Vec<(String, f64)>> {
        let mut frequency = vec![0u64; self.terms.len()];
        let mut total = 0u64;
        for counts in &self.clusters {
            for &(id, n) in counts {
                frequency[id as usize] += n;
                total += n;
            }
        }
        let average = if self.clusters.is_empty() {
            0.0
        } else {
            total as f64 / self.clusters.len() as f64
        };
        let best_first =
            |a: &(f64, &str), b: &(f64, &str)| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1));
        self.clusters
            .iter()
            .map(|counts| {
                let tokens: u64 = counts.iter().map(|&(_, n)| n).sum();
                if tokens == 0 {
                    return Vec::new();
                }
                let mut scored: Vec<(f64, &str)> = counts
                    .iter()
                    .map(|&(id, n)| {
                        let tf = n as f64 / tokens as f64;
                        let idf = (1.0 + average / frequency[id as usize] as f64).ln();
                        (tf * idf, self.terms[id as usize].as_str())
                    })
                    .collect();
                // Only the top few are wanted: select them before sorting (a large
                // cluster's vocabulary can be tens of thousands of terms).
                if scored.len() > TOP_KEYWORDS {
                    scored.select_nth_unstable_by(TOP_KEYWORDS - 1, best_first);
                    scored.truncate(TOP_KEYWORDS);
                }
                scored.sort_by(best_first);
                scored
                    .into_iter()
                    .map(|(score, term)| (term.to_owned(), score))
                    .collect()
            })
            .collect()
    }
}

/// Offline labels for every cluster (pure, deterministic).
///
/// - `label`: the top 3 c-TF-IDF keywords joined by " · ", or [`NO_TEXT_LABEL`] for a cluster
///   without tokens.
/// - `keywords`: the top 10 keywords (empty unless `include_keywords`).
/// - `summary` (only with `include_summary`): not generated text but the first two
///   representatives quoted, each trimmed to about 200 characters at a word boundary and
///   joined by " | "; `None` when the cluster has no representatives.
pub fn offline_labels(corpus: &Corpus, options: &LabelingOptions) -> Vec<ClusterLabel> {
    corpus
        .keywords()
        .into_iter()
        .enumerate()
        .map(|(cluster, keywords)| {
            let label = if keywords.is_empty() {
                NO_TEXT_LABEL.to_owned()
            } else {
                keywords[..keywords.len().min(LABEL_KEYWORDS)].join(" · ")
            };
            ClusterLabel {
                label,
                keywords: if options.include_keywords {
                    keywords
                } else {
                    Vec::new()
                },
                summary: if options.include_summary {
                    offline_summary(corpus.representatives(cluster))
                } else {
                    None
                },
            }
        })
        .collect()
}

fn offline_summary(representatives: &[String]) -> Option<String> {
    let parts: Vec<String> = representatives
        .iter()
        .map(|t| trim_at_word(&collapse_whitespace(t), SUMMARY_CHARS))
        .filter(|t| !t.is_empty())
        .take(SUMMARY_REPRESENTATIVES)
        .collect();
    (!parts.is_empty()).then(|| parts.join(" | "))
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first `max` characters of `text` (on a char boundary).
pub(crate) fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// `text` cut to at most `max` characters, at the last word boundary when one exists, with
/// "…" appended when something was cut.
fn trim_at_word(text: &str, max: usize) -> String {
    let cut = truncate_chars(text, max);
    if cut.len() == text.len() {
        return cut.to_owned();
    }
    let at_word = if text[cut.len()..].starts_with(char::is_whitespace) {
        cut
    } else {
        match cut.rfind(char::is_whitespace) {
            Some(space) if space > 0 => &cut[..space],
            _ => cut,
        }
    };
    format!("{}…", at_word.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(include_keywords: bool, include_summary: bool) -> LabelingOptions {
        LabelingOptions {
            include_keywords,
            include_summary,
            model_name: None,
        }
    }

    /// Three clusters of 40 texts; each text mixes shared filler words with two of its
    /// cluster's three planted words (chosen by a fixed rotation).
    fn planted_corpus() -> (Corpus, [[&'static str; 3]; 3]) {
        let planted = [
            ["battery", "charger", "usb"],
            ["pasta", "recipe", "tomato"],
            ["goalkeeper", "penalty", "stadium"],
        ];
        let filler = [
            "customer", "review", "product", "great", "really", "bought", "week",
        ];
        let mut builder = CorpusBuilder::new(3);
        for (c, words) in planted.iter().enumerate() {
            for i in 0..40 {
                let text = format!(
                    "The {} and {} were {} {}; I {} it in 2024 with a {} {}.",
                    words[i % 3],
                    words[(i + 1) % 3],
                    filler[i % 7],
                    filler[(i + 2) % 7],
                    filler[(i + 3) % 7],
                    filler[(i + 4) % 7],
                    filler[(i + 5) % 7],
                );
                builder.add(c, &text);
            }
            builder.set_representatives(
                c,
                vec![
                    format!("{} first", words[0]),
                    format!("{} second", words[1]),
                ],
            );
        }
        (builder.finish(), planted)
    }

    #[test]
    fn offline_top_three_keywords_are_each_clusters_planted_words() {
        let (corpus, planted) = planted_corpus();
        let labels = offline_labels(&corpus, &options(true, true));
        assert_eq!(labels.len(), 3);
        for (label, words) in labels.iter().zip(planted) {
            let mut top: Vec<&str> = label.keywords[..3].iter().map(String::as_str).collect();
            top.sort_unstable();
            assert_eq!(top, words, "{label:?}");
            assert_eq!(label.label, label.keywords[..3].join(" · "));
            assert_eq!(label.keywords.len(), TOP_KEYWORDS);
        }
    }

    #[test]
    fn scores_follow_the_class_based_tf_idf_formula() {
        let mut builder = CorpusBuilder::new(2);
        builder.add(0, "apple apple");
        builder.add(0, "banana");
        builder.add(1, "banana cherry");
        let scores = builder.finish().keyword_scores();
        // A = 5 tokens / 2 clusters; f_apple = f_banana = 2, f_cherry = 1.
        let idf = |f: f64| (1.0 + 2.5 / f).ln();
        let expected = [
            vec![
                ("apple", 2.0 / 3.0 * idf(2.0)),
                ("banana", 1.0 / 3.0 * idf(2.0)),
            ],
            vec![("cherry", 0.5 * idf(1.0)), ("banana", 0.5 * idf(2.0))],
        ];
        for (got, want) in scores.iter().zip(&expected) {
            assert_eq!(got.len(), want.len());
            for ((term, score), (want_term, want_score)) in got.iter().zip(want) {
                assert_eq!(term, want_term);
                assert!(
                    (score - want_score).abs() < 1e-12,
                    "{term}: {score} vs {want_score}"
                );
            }
        }
    }

    #[test]
    fn top_keywords_of_a_large_vocabulary_are_the_best_scored_in_order() {
        let mut builder = CorpusBuilder::new(1);
        // Term `wNN` occurs NN times: the top ten are w60 down to w51.
        for n in 1..=60 {
            builder.add(0, &format!("w{n} ").repeat(n));
        }
        let keywords = builder.finish().keywords();
        let expected: Vec<String> = (51..=60).rev().map(|n| format!("w{n}")).collect();
        assert_eq!(keywords[0], expected);
    }

    #[test]
    fn stop_words_numbers_and_single_characters_are_never_keywords() {
        let mut builder = CorpusBuilder::new(2);
        builder.add(0, "The cat and the 2024 cat, x y z 42 of THE cats 3.14");
        builder.add(1, "A dog is with the dog 7 and 12345");
        let labels = offline_labels(&builder.finish(), &options(true, false));
        assert_eq!(labels[0].keywords, ["cat", "cats"]);
        assert_eq!(labels[1].keywords, ["dog"]);
    }

    #[test]
    fn tokens_are_lowercased_unicode_words() {
        let mut tokens = Vec::new();
        for_each_token("Café-CRÈME naïve_x 東京 über9 a1 b 99", |t| {
            tokens.push(t.to_owned())
        });
        assert_eq!(tokens, ["café", "crème", "naïve", "東京", "über9", "a1"]);
    }

    #[test]
    fn offline_labels_are_deterministic_and_ties_break_by_term() {
        let mut builder = CorpusBuilder::new(1);
        builder.add(0, "zebra yak xylophone walrus zebra yak xylophone walrus");
        let corpus = builder.finish();
        let first = offline_labels(&corpus, &options(true, true));
        assert_eq!(first[0].label, "walrus · xylophone · yak");
        for _ in 0..5 {
            assert_eq!(offline_labels(&corpus, &options(true, true)), first);
        }
        let (a, _) = planted_corpus();
        let (b, _) = planted_corpus();
        assert_eq!(
            offline_labels(&a, &options(true, true)),
            offline_labels(&b, &options(true, true))
        );
    }

    #[test]
    fn include_flags_drop_keywords_and_summary() {
        let (corpus, _) = planted_corpus();
        let full = offline_labels(&corpus, &options(true, true));
        let bare = offline_labels(&corpus, &options(false, false));
        for (f, b) in full.iter().zip(&bare) {
            assert_eq!(f.label, b.label);
            assert!(b.keywords.is_empty());
            assert_eq!(b.summary, None);
            assert!(!f.keywords.is_empty());
        }
        assert_eq!(
            full[0].summary.as_deref(),
            Some("battery first | charger second")
        );
    }

    #[test]
    fn cluster_without_tokens_is_labelled_as_such() {
        let mut builder = CorpusBuilder::new(2);
        builder.add(0, "the 123 of a");
        builder.add(1, "rockets");
        let labels = offline_labels(&builder.finish(), &options(true, true));
        assert_eq!(labels[0].label, NO_TEXT_LABEL);
        assert!(labels[0].keywords.is_empty());
        assert_eq!(labels[0].summary, None);
        assert_eq!(labels[1].label, "rockets");
    }

    #[test]
    fn representatives_are_capped_in_count_and_length() {
        let mut builder = CorpusBuilder::new(1);
        let long = "é".repeat(MAX_REPRESENTATIVE_CHARS + 50);
        builder.set_representatives(0, vec![long; MAX_REPRESENTATIVES + 3]);
        let corpus = builder.finish();
        assert_eq!(corpus.representatives(0).len(), MAX_REPRESENTATIVES);
        assert!(
            corpus
                .representatives(0)
                .iter()
                .all(|r| r.chars().count() == MAX_REPRESENTATIVE_CHARS)
        );
    }

    #[test]
    fn summary_trims_long_representatives_at_a_word_boundary() {
        let text = format!("{} tail", "word ".repeat(60));
        let summary = offline_summary(&[text, "second\n\n text".into(), "third".into()]);
        let summary = summary.unwrap();
        let (first, second) = summary.split_once(" | ").unwrap();
        assert!(first.ends_with("word…"), "{first}");
        assert!(first.chars().count() <= SUMMARY_CHARS + 1);
        assert_eq!(second, "second text");
    }

    #[test]
    fn cluster_index_past_the_announced_count_grows_the_corpus() {
        let mut builder = CorpusBuilder::new(1);
        builder.add(2, "meteor");
        let corpus = builder.finish();
        assert_eq!(corpus.n_clusters(), 3);
        assert_eq!(
            offline_labels(&corpus, &options(true, false))[2].label,
            "meteor"
        );
    }
}
