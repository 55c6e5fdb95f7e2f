//! OpenAI-compatible chat-completions provider: one request per cluster, bounded
//! concurrency, retries with exponential backoff and jitter, offline fallback per cluster.

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::tfidf::truncate_chars;
use super::{
    ClusterLabel, Corpus, LabelingError, LabelingOptions, Labels, Provider, offline_labels,
};

/// Longest label accepted from the model, in characters.
const MAX_LABEL_CHARS: usize = 100;
/// Keywords kept from the model's answer.
const MAX_MODEL_KEYWORDS: usize = 10;
/// Longest wait between attempts (and longest `Retry-After` honoured), unless the configured
/// base backoff is itself longer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const SYSTEM_PROMPT: &str =
    "You name clusters of documents. Reply with a single JSON object and nothing else.";
/// Characters of a server's error body or of an unparsable answer quoted in an error.
const QUOTED_CHARS: usize = 160;

/// Connection settings of an OpenAI-compatible endpoint (server configuration only).
#[derive(Clone)]
pub struct OpenAiConfig {
    /// e.g. "https://api.openai.com/v1"; `/chat/completions` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; never logged, never in `Debug` output or errors.
    pub api_key: Option<String>,
    pub default_model: String,
    /// Limit of one HTTP attempt, from connecting to the end of the response body.
    pub timeout: Duration,
    /// Retries after the first attempt (on 5xx, 429, timeouts and connection errors).
    pub max_retries: u32,
    /// Base of the exponential backoff between attempts (jittered, capped at 30 s).
    pub backoff: Duration,
    /// Clusters labelled at once (0 is taken as 1).
    pub max_concurrency: usize,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("default_model", &self.default_model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}

/// Labels every cluster with `provider`.
///
/// `Offline` gives [`offline_labels`] and no errors. `OpenAi` asks the chat-completions
/// endpoint once per cluster (at most `max_concurrency` at a time); a cluster whose request
/// fails after the retries, times out, or whose answer is not the JSON asked for keeps its
/// offline label and gets one [`LabelingError`]. Clusters with neither text nor
/// representatives are not sent (their offline label says so). When `cancel` fires, the
/// clusters not yet labelled keep their offline labels with the error "cancelled". Never
/// fails as a whole.
pub async fn label(
    corpus: &Corpus,
    options: &LabelingOptions,
    provider: &Provider,
    cancel: &CancellationToken,
) -> Labels {
    let mut labels = offline_labels(corpus, options);
    let config = match provider {
        Provider::Offline => {
            return Labels {
                labels,
                errors: Vec::new(),
            };
        }
        Provider::OpenAi(config) => config,
    };
    let to_label: Vec<usize> = (0..corpus.n_clusters())
        .filter(|&c| !corpus.is_empty_cluster(c))
        .collect();
    let mut errors = Vec::new();
    let client = match reqwest::Client::builder().build() {
        Ok(client) => client,
        Err(e) => {
            let message = format!("could not build the HTTP client: {}", e.without_url());
            errors.extend(to_label.iter().map(|&cluster| LabelingError {
                cluster,
                message: message.clone(),
            }));
            return Labels { labels, errors };
        }
    };
    let keywords = corpus.keywords();
    let request = Request {
        client: &client,
        config,
        url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
        model: options
            .model_name
            .as_deref()
            .unwrap_or(&config.default_model),
        options,
    };
    let results: Vec<(usize, Result<ClusterLabel, String>)> = futures::stream::iter(to_label)
        .map(|cluster| {
            let body = request.body(corpus.representatives(cluster), &keywords[cluster]);
            let request = &request;
            async move {
                let result = if cancel.is_cancelled() {
                    Err("cancelled".to_owned())
                } else {
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => Err("cancelled".to_owned()),
                        result = request.with_retries(&body) => result,
                    }
                };
                (cluster, result)
            }
        })
        .buffer_unordered(config.max_concurrency.max(1))
        .collect()
        .await;
    for (cluster, result) in results {
        match result {
            Ok(label) => labels[cluster] = label,
            Err(message) => {
                let message = redact(message, config.api_key.as_deref());
                tracing::warn!(cluster, error = %message, "cluster keeps its offline label");
                errors.push(LabelingError { cluster, message });
            }
        }
    }
    errors.sort_by_key(|e| e.cluster);
    Labels { labels, errors }
}

struct Request<'a> {
    client: &'a reqwest::Client,
    config: &'a OpenAiConfig,
    url: String,
    model: &'a str,
    options: &'a LabelingOptions,
}

/// Why an attempt may be worth repeating.
enum Transient {
    Status(StatusCode, Option<Duration>),
    Timeout,
    Transport(String),
}

enum Attempt {
    Done(Result<ClusterLabel, String>),
    Retry(Transient),
}

impl Request<'_> {
    fn body(&self, representatives: &[String], keywords: &[String]) -> Value {
        let mut documents = String::new();
        if representatives.is_empty() {
            documents.push_str("(no representative documents were given)\n");
        }
        for (i, text) in representatives.iter().enumerate() {
            documents.push_str(&format!("{}. {}\n", i + 1, text.trim()));
        }
        let mut fields =
            vec!["\"label\": a short name for the cluster (at most 6 words)".to_owned()];
        if self.options.include_keywords {
            fields.push(format!(
                "\"keywords\": a list of at most {MAX_MODEL_KEYWORDS} keywords (strings)"
            ));
        }
        if self.options.include_summary {
            fields.push(
                "\"summary\": one sentence describing what the documents have in common".to_owned(),
            );
        }
        let user = format!(
            "Documents of one cluster, the most typical first:\n\n{documents}\n\
             Distinctive keywords of the cluster (c-TF-IDF): {}\n\n\
             Reply with one JSON object with these fields: {}.",
            if keywords.is_empty() {
                "(none)".to_owned()
            } else {
                keywords.join(", ")
            },
            fields.join("; "),
        );
        json!({
            "model": self.model,
            "messages": [
                {
                    "role": "system",
                    "content": SYSTEM_PROMPT,
                },
                { "role": "user", "content": user },
            ],
            "temperature": 0,
            "response_format": { "type": "json_object" },
        })
    }

    async fn with_retries(&self, body: &Value) -> Result<ClusterLabel, String> {
        let attempts = self.config.max_retries.saturating_add(1);
        let mut last = Transient::Timeout;
        for attempt in 0..attempts {
            if attempt > 0 {
                let retry_after = match last {
                    Transient::Status(_, retry_after) => retry_after,
                    _ => None,
                };
                tokio::time::sleep(backoff_delay(self.config.backoff, attempt - 1, retry_after))
                    .await;
            }
            match self.attempt(body).await {
                Attempt::Done(result) => return result,
                Attempt::Retry(transient) => last = transient,
            }
        }
        let times = if attempts == 1 {
            "1 attempt".to_owned()
        } else {
            format!("{attempts} attempts")
        };
        Err(match last {
            Transient::Status(status, _) => format!("HTTP {} after {times}", status.as_u16()),
            Transient::Timeout => {
                format!("timed out after {} ({times})", seconds(self.config.timeout))
            }
            Transient::Transport(e) => format!("request failed after {times}: {e}"),
        })
    }

    async fn attempt(&self, body: &Value) -> Attempt {
        let mut builder = self.client.post(&self.url).json(body);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let exchange = async {
            let response = builder.send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response.text().await?;
            Ok::<_, reqwest::Error>((status, retry_after, text))
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Err(_elapsed) => Attempt::Retry(Transient::Timeout),
            Ok(Err(e)) if e.is_timeout() => Attempt::Retry(Transient::Timeout),
            Ok(Err(e)) if e.is_connect() || e.is_request() || e.is_body() => {
                Attempt::Retry(Transient::Transport(e.without_url().to_string()))
            }
            Ok(Err(e)) => Attempt::Done(Err(format!("request failed: {}", e.without_url()))),
            Ok(Ok((status, retry_after, text))) => {
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    Attempt::Retry(Transient::Status(status, retry_after))
                } else if !status.is_success() {
                    Attempt::Done(Err(format!(
                        "HTTP {}: {}",
                        status.as_u16(),
                        truncate_chars(text.trim(), QUOTED_CHARS)
                    )))
                } else {
                    Attempt::Done(
                        parse_answer(&text, self.options)
                            .map_err(|e| format!("answer was not the JSON asked for: {e}")),
                    )
                }
            }
        }
    }
}

/// `base · 2^retry`, capped, with jitter in [½, 1] of it so that clusters failing together
/// do not retry in lockstep; a server's `Retry-After` is honoured up to the cap.
fn backoff_delay(base: Duration, retry: u32, retry_after: Option<Duration>) -> Duration {
    let cap = MAX_BACKOFF.max(base);
    let exponential = base.saturating_mul(1u32 << retry.min(20)).min(cap);
    let jittered = exponential.mul_f64(rand::rng().random_range(0.5..=1.0));
    jittered.max(retry_after.unwrap_or(Duration::ZERO).min(cap))
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn redact(message: String, key: Option<&str>) -> String {
    match key {
        Some(key) if !key.is_empty() && message.contains(key) => message.replace(key, "<redacted>"),
        _ => message,
    }
}

/// The model's `{"label", "keywords", "summary"}` out of a chat-completions response; keeps
/// keywords and summary only as `options` ask (and requires them then).
fn parse_answer(response: &str, options: &LabelingOptions) -> Result<ClusterLabel, String> {
    let response: Value = serde_json::from_str(response)
        .map_err(|e| format!("the response body is not JSON ({e})"))?;
    let content = response
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or("the response has no choices[0].message.content string")?;
    let quoted = || truncate_chars(content.trim(), QUOTED_CHARS).to_owned();
    let answer: Value =
        serde_json::from_str(strip_fence(content)).map_err(|e| format!("{e} in {:?}", quoted()))?;
    let answer = answer
        .as_object()
        .ok_or_else(|| format!("not a JSON object: {:?}", quoted()))?;
    let label = answer
        .get("label")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or("no non-empty \"label\" string")?;
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(format!(
            "\"label\" is longer than {MAX_LABEL_CHARS} characters"
        ));
    }
    let keywords = if options.include_keywords {
        let list = answer
            .get("keywords")
            .and_then(Value::as_array)
            .ok_or("no \"keywords\" list")?;
        let mut keywords = Vec::with_capacity(list.len().min(MAX_MODEL_KEYWORDS));
        for keyword in list {
            let keyword = keyword
                .as_str()
                .ok_or("\"keywords\" holds a value that is not a string")?;
            let keyword = keyword.trim();
            if !keyword.is_empty() && keywords.len() < MAX_MODEL_KEYWORDS {
                keywords.push(keyword.to_owned());
            }
        }
        keywords
    } else {
        Vec::new()
    };
    let summary = if options.include_summary {
        let summary = answer
            .get("summary")
            .and_then(Value::as_str)
            .ok_or("no \"summary\" string")?
            .trim();
        (!summary.is_empty()).then(|| summary.to_owned())
    } else {
        None
    };
    Ok(ClusterLabel {
        label: label.to_owned(),
        keywords,
        summary,
    })
}

/// Models asked for JSON sometimes still wrap it in a Markdown code fence.
fn strip_fence(content: &str) -> &str {
    let trimmed = content.trim();
    let Some(rest) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    // Drop the info string ("json") on the fence line.
    let rest = rest.split_once('\n').map_or("", |(_, body)| body);
    rest.trim_end().strip_suffix("```").unwrap_or(rest).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> LabelingOptions {
        LabelingOptions::default()
    }

    fn completion(content: &str) -> String {
        json!({"choices": [{"message": {"role": "assistant", "content": content}}]}).to_string()
    }

    #[test]
    fn answer_in_a_json_code_fence_is_accepted() {
        let body = completion(
            "```json\n{\"label\": \"Phone chargers\", \"keywords\": [\"usb\", \" \"], \
             \"summary\": \"About chargers.\"}\n```",
        );
        let label = parse_answer(&body, &all()).unwrap();
        assert_eq!(label.label, "Phone chargers");
        assert_eq!(label.keywords, ["usb"]);
        assert_eq!(label.summary.as_deref(), Some("About chargers."));
    }

    #[test]
    fn answer_keeps_keywords_and_summary_only_as_asked() {
        let body = completion(r#"{"label": "L", "keywords": ["a"], "summary": "S"}"#);
        let options = LabelingOptions {
            include_keywords: false,
            include_summary: false,
            model_name: None,
        };
        let label = parse_answer(&body, &options).unwrap();
        assert!(label.keywords.is_empty());
        assert_eq!(label.summary, None);
    }

    #[test]
    fn answers_without_the_asked_fields_are_rejected() {
        for content in [
            "Sure! Here is the label: chargers",
            r#"["label"]"#,
            r#"{"label": ""}"#,
            r#"{"label": "L", "summary": "S"}"#,
            r#"{"label": "L", "keywords": [1], "summary": "S"}"#,
            r#"{"label": "L", "keywords": []}"#,
        ] {
            assert!(
                parse_answer(&completion(content), &all()).is_err(),
                "{content}"
            );
        }
        let long = json!({"label": "x".repeat(101), "keywords": [], "summary": ""}).to_string();
        assert!(parse_answer(&completion(&long), &all()).is_err());
        assert!(parse_answer("{\"choices\": []}", &all()).is_err());
        assert!(parse_answer("<html>", &all()).is_err());
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let base = Duration::from_millis(100);
        for retry in 0..4 {
            let d = backoff_delay(base, retry, None);
            let full = base * (1 << retry);
            assert!(d >= full / 2 && d <= full, "{retry}: {d:?}");
        }
        assert!(backoff_delay(base, 40, None) <= MAX_BACKOFF);
        assert_eq!(
            backoff_delay(Duration::ZERO, 3, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff_delay(Duration::ZERO, 0, Some(Duration::from_secs(3600))),
            MAX_BACKOFF
        );
    }

    #[test]
    fn key_is_redacted_from_messages() {
        assert_eq!(
            redact("echo sk-123 back".into(), Some("sk-123")),
            "echo <redacted> back"
        );
        assert_eq!(redact("nothing".into(), None), "nothing");
    }
}
