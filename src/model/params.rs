//! `algorithm_params` as the engine sees them: a transport-neutral map of JSON-like values
//! (REST gives serde_json, gRPC gives `google.protobuf.Struct`; both convert into this),
//! plus the typed readers that each algorithm's validator uses. Readers name the parameter
//! in every error; the caller prefixes `config.algorithm_params`.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<ParamValue>),
    Map(BTreeMap<String, ParamValue>),
}

impl ParamValue {
    fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Null => "null",
            ParamValue::Bool(_) => "a boolean",
            ParamValue::Number(_) => "a number",
            ParamValue::String(_) => "a string",
            ParamValue::List(_) => "a list",
            ParamValue::Map(_) => "an object",
        }
    }
}

impl From<&serde_json::Value> for ParamValue {
    fn from(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => ParamValue::Null,
            serde_json::Value::Bool(b) => ParamValue::Bool(*b),
            // serde_json keeps every finite number representable as f64.
            serde_json::Value::Number(n) => ParamValue::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => ParamValue::String(s.clone()),
            serde_json::Value::Array(a) => ParamValue::List(a.iter().map(Into::into).collect()),
            serde_json::Value::Object(m) => {
                ParamValue::Map(m.iter().map(|(k, v)| (k.clone(), v.into())).collect())
            }
        }
    }
}

/// The parameters of one request. Readers mark what they consumed; `finish` rejects the
/// rest, so a misspelt or foreign parameter is an error instead of being ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamMap {
    values: BTreeMap<String, ParamValue>,
}

impl ParamMap {
    pub fn new(values: BTreeMap<String, ParamValue>) -> Self {
        ParamMap { values }
    }
    /// The parameters of a JSON object (`None` for any other JSON value).
    pub fn from_json(json: &serde_json::Value) -> Option<Self> {
        match ParamValue::from(json) {
            ParamValue::Map(m) => Some(ParamMap::new(m)),
            _ => None,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ParamValue)> {
        self.values.iter()
    }
    pub fn reader(&self) -> ParamReader<'_> {
        ParamReader {
            map: self,
            seen: BTreeSet::new(),
        }
    }
}

pub struct ParamReader<'a> {
    map: &'a ParamMap,
    seen: BTreeSet<&'a str>,
}

impl<'a> ParamReader<'a> {
    /// The value, if given and not null (null means "use the default", as in Python).
    fn get(&mut self, name: &'a str) -> Option<&'a ParamValue> {
        self.seen.insert(name);
        match self.map.values.get(name) {
            None | Some(ParamValue::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn is_given(&self, name: &str) -> bool {
        !matches!(self.map.values.get(name), None | Some(ParamValue::Null))
    }

    pub fn number(&mut self, name: &'a str) -> ApiResult<Option<f64>> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Number(n)) if n.is_finite() => Ok(Some(*n)),
            Some(ParamValue::Number(_)) => {
                Err(ApiError::invalid_parameter(name, "must be a finite number"))
            }
            Some(other) => Err(ApiError::invalid_request(
                name,
                format!("must be a number, got {}", other.type_name()),
            )),
        }
    }

    /// An integer; JSON numbers that are integers in value (5.0) are accepted, 5.5 is not.
    pub fn integer(&mut self, name: &'a str) -> ApiResult<Option<i64>> {
        match self.number(name)? {
            None => Ok(None),
            Some(n) if n.fract() == 0.0 && n.abs() <= 9.007_199_254_740_992e15 => {
                Ok(Some(n as i64))
            }
            Some(n) => Err(ApiError::invalid_request(
                name,
                format!("must be an integer, got {n}"),
            )),
        }
    }

    /// An integer within `[min, max]`.
    pub fn integer_in(&mut self, name: &'a str, min: i64, max: i64) -> ApiResult<Option<i64>> {
        match self.integer(name)? {
            Some(v) if v < min || v > max => Err(ApiError::invalid_parameter(
                name,
                format!("must be between {min} and {max}, got {v}"),
            )),
            v => Ok(v),
        }
    }

    pub fn string(&mut self, name: &'a str) -> ApiResult<Option<&'a str>> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(ApiError::invalid_request(
                name,
                format!("must be a string, got {}", other.type_name()),
            )),
        }
    }

    /// One of a fixed set of strings.
    pub fn choice(&mut self, name: &'a str, allowed: &[&str]) -> ApiResult<Option<&'a str>> {
        match self.string(name)? {
            Some(s) if !allowed.contains(&s) => Err(ApiError::invalid_parameter(
                name,
                format!("must be one of {}, got {s:?}", allowed.join(", ")),
            )),
            v => Ok(v),
        }
    }

    pub fn boolean(&mut self, name: &'a str) -> ApiResult<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ApiError::invalid_request(
                name,
                format!("must be a boolean, got {}", other.type_name()),
            )),
        }
    }

    /// The raw value, for parameters that accept several types (`n_init`: int or "auto").
    pub fn raw(&mut self, name: &'a str) -> Option<&'a ParamValue> {
        self.get(name)
    }

    /// Reject every parameter that no reader asked for, naming the first one.
    pub fn finish(self, algorithm: &str) -> ApiResult<()> {
        let known: Vec<&str> = self.seen.iter().copied().collect();
        match self
            .map
            .values
            .keys()
            .find(|k| !self.seen.contains(k.as_str()))
        {
            None => Ok(()),
            Some(unknown) => Err(ApiError::invalid_request(
                unknown,
                format!(
                    "unknown parameter for {algorithm}; accepted: {}",
                    known.join(", ")
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: serde_json::Value) -> ParamMap {
        ParamMap::from_json(&json).expect("test input must be an object")
    }

    #[test]
    fn integer_accepts_integral_floats_and_rejects_fractions() {
        let m = map(serde_json::json!({"a": 5.0, "b": 5.5, "c": "5"}));
        let mut r = m.reader();
        assert_eq!(r.integer("a").unwrap(), Some(5));
        assert_eq!(r.integer("b").unwrap_err().field.as_deref(), Some("b"));
        assert_eq!(
            r.integer("c").unwrap_err().code,
            super::super::error::ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn finish_names_the_unknown_parameter() {
        let m = map(serde_json::json!({"n_clusters": 3, "n_cluster": 4}));
        let mut r = m.reader();
        r.integer("n_clusters").unwrap();
        let err = r.finish("kmeans").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("n_cluster"));
    }

    #[test]
    fn null_means_default() {
        let m = map(serde_json::json!({"random_state": null}));
        let mut r = m.reader();
        assert_eq!(r.integer("random_state").unwrap(), None);
        r.finish("kmeans").unwrap();
    }
}
