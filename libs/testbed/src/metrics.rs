//! Reading a Prometheus text exposition (`/metrics`) in tests: one sample by name and labels.

/// A `/metrics` body.
#[derive(Debug, Clone)]
pub struct Metrics {
    text: String,
}

/// One sample line: its metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// The metric name, e.g. `http_server_request_duration_seconds_count`.
    pub name: String,
    /// The labels in exposition order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Metrics {
    /// Wraps a `/metrics` body.
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }

    /// The body as served.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every sample (comments and malformed lines skipped).
    pub fn samples(&self) -> impl Iterator<Item = MetricSample> + '_ {
        self.text.lines().filter_map(parse_line)
    }

    /// The value of the one sample named `name` carrying at least `labels`; `None` when there is
    /// none. Panics when several samples match: the caller must name more labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matches: Vec<MetricSample> = self.matching(name, labels).collect();
        assert!(
            matches.len() <= 1,
            "{} samples of {name} carry {labels:?}: name more labels\n{matches:?}",
            matches.len()
        );
        matches.first().map(|s| s.value)
    }

    /// The sum over every sample named `name` carrying at least `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = MetricSample> + 'a {
        self.samples().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
    }
}

/// `name{k="v",…} value [timestamp]`, with `\"`, `\\` and `\n` escapes in label values.
fn parse_line(line: &str) -> Option<MetricSample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(MetricSample {
        name,
        labels,
        value,
    })
}

/// The labels after `{`, and the text after the closing `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        let mut chars = s[eq + 1..].strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[eq + 1..][1 + end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"# HELP heart_beats_total Beats.
# TYPE heart_beats_total counter
heart_beats_total 3
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/beat",http_response_status_code="200"} 2
http_server_request_duration_seconds_count{http_request_method="GET",http_route="/beat",http_response_status_code="503"} 1
odd{path="a \"quoted\", comma"} 7 1700000000
"#;

    #[test]
    fn a_sample_without_labels_is_read() {
        assert_eq!(
            Metrics::new(BODY).value("heart_beats_total", &[]),
            Some(3.0)
        );
    }

    #[test]
    fn a_sample_is_picked_by_a_subset_of_its_labels() {
        let m = Metrics::new(BODY);
        let name = "http_server_request_duration_seconds_count";
        assert_eq!(
            m.value(name, &[("http_response_status_code", "503")]),
            Some(1.0)
        );
        assert_eq!(m.sum(name, &[("http_route", "/beat")]), 3.0);
        assert_eq!(m.value(name, &[("http_route", "/other")]), None);
    }

    #[test]
    fn escaped_label_values_and_timestamps_are_understood() {
        let m = Metrics::new(BODY);
        assert_eq!(
            m.value("odd", &[("path", "a \"quoted\", comma")]),
            Some(7.0)
        );
    }

    #[test]
    #[should_panic(expected = "name more labels")]
    fn an_ambiguous_question_panics() {
        Metrics::new(BODY).value("http_server_request_duration_seconds_count", &[]);
    }
}
