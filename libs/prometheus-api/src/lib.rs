//! The answers of Prometheus's HTTP query API, decoded.
//!
//! Every PromQL client of the workspace (health-monitor's checks, testbed's harness) sends
//! `GET /api/v1/query` with its own HTTP client and reads the answer here: the envelope's
//! `status`/`errorType`/`error`, an instant vector or a scalar as [`Sample`]s, and the special
//! values `+Inf`, `-Inf` and `NaN`.
//!
//! ```
//! let body = br#"{"status":"success","data":{"resultType":"vector","result":[
//!     {"metric":{"job":"heart"},"value":[1700000000.5,"1"]}]}}"#;
//! let samples = prometheus_api::parse_query_response(body).unwrap();
//! assert_eq!(samples[0].metric["job"], "heart");
//! assert_eq!(samples[0].value, 1.0);
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// The path of an instant query, below a Prometheus base URL.
pub const QUERY_PATH: &str = "/api/v1/query";

/// One series of an instant query (or the one value of a scalar, without labels).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (`__name__` included when the query keeps it).
    pub metric: BTreeMap<String, String>,
    /// Evaluation time, Unix seconds.
    pub timestamp: f64,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A sample of `value` with `labels`, at time 0 (for tests and synthetic series).
    pub fn new<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>, value: f64) -> Self {
        Self {
            metric: labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            timestamp: 0.0,
            value,
        }
    }
}

/// A query that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Transport failure, timeout, or an HTTP error without an API answer.
    #[error("Prometheus unreachable: {0}")]
    Unreachable(String),
    /// Prometheus answered an error (bad PromQL, ...).
    #[error("Prometheus rejected the query: {0}")]
    Rejected(String),
    /// The answer was not what the API documents (or not an instant vector or scalar).
    #[error("unexpected answer from Prometheus: {0}")]
    Decode(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorSample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// A sample value as the API writes it: a decimal, `+Inf`, `-Inf` or `NaN`.
pub fn parse_value(text: &str) -> Result<f64, QueryError> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        t => t
            .parse()
            .map_err(|_| QueryError::Decode(format!("sample value {t:?}"))),
    }
}

/// Parses an instant query's JSON answer into samples: one per series of a vector, or one
/// without labels for a scalar. A range vector or a string is a [`QueryError::Decode`].
pub fn parse_query_response(body: &[u8]) -> Result<Vec<Sample>, QueryError> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| QueryError::Decode(e.to_string()))?;
    if env.status != "success" {
        return Err(QueryError::Rejected(format!(
            "{}: {}",
            env.error_type.unwrap_or_default(),
            env.error.unwrap_or_default()
        )));
    }
    match env.data {
        Some(Data::Vector(v)) => v
            .into_iter()
            .map(|s| {
                Ok(Sample {
                    metric: s.metric,
                    timestamp: s.value.0,
                    value: parse_value(&s.value.1)?,
                })
            })
            .collect(),
        Some(Data::Scalar((timestamp, v))) => Ok(vec![Sample {
            metric: BTreeMap::new(),
            timestamp,
            value: parse_value(&v)?,
        }]),
        Some(Data::Matrix(_) | Data::String(_)) => Err(QueryError::Decode(
            "the query must give an instant vector or a scalar".into(),
        )),
        None => Err(QueryError::Decode("no data".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_gives_one_sample_per_series_with_its_time() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"a"},"value":[10.5,"1.5"]},{"metric":{"job":"b"},"value":[10.5,"+Inf"]}]}}"#;
        let s = parse_query_response(body).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].timestamp, s[0].value), (10.5, 1.5));
        assert_eq!(s[1].value, f64::INFINITY);
    }

    #[test]
    fn a_scalar_gives_one_sample_without_labels() {
        let body = br#"{"status":"success","data":{"resultType":"scalar","result":[3,"NaN"]}}"#;
        let s = parse_query_response(body).unwrap();
        assert!(s[0].metric.is_empty() && s[0].value.is_nan());
    }

    #[test]
    fn an_api_error_is_rejected_with_its_type() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            parse_query_response(body),
            Err(QueryError::Rejected("bad_data: parse error".into()))
        );
    }

    #[test]
    fn a_range_vector_or_garbage_is_a_decode_error() {
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse_query_response(matrix),
            Err(QueryError::Decode(_))
        ));
        assert!(matches!(
            parse_query_response(b"<html>"),
            Err(QueryError::Decode(_))
        ));
        assert!(matches!(parse_value("one"), Err(QueryError::Decode(_))));
    }
}
