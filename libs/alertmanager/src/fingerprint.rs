//! Label-set fingerprints, computed exactly as Prometheus and Alertmanager do.
//!
//! `prometheus/common` `model.LabelSet.Fingerprint()`: FNV-1a 64 over the label pairs sorted by
//! name, each written as name bytes, `0xff`, value bytes, `0xff`. An empty set hashes to the FNV
//! offset basis. Alertmanager prints it as 16 lowercase hex digits (`%016x`), which is the
//! `fingerprint` of a webhook alert and of `GET /api/v2/alerts`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const FNV_OFFSET_BASIS: u64 = 14_695_981_039_346_656_037;
const FNV_PRIME: u64 = 1_099_511_628_211;
const SEPARATOR: u8 = 0xff;

/// A 64-bit label-set fingerprint. Displays (and serializes) as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint of a label set (names are unique in a `BTreeMap`, already in byte order).
    pub fn of_labels(labels: &BTreeMap<String, String>) -> Self {
        Self::of_sorted_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The fingerprint of label pairs in any order. Later duplicates of a name replace earlier
    /// ones, as inserting into a Go `LabelSet` map would.
    pub fn of_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let set: BTreeMap<&str, &str> = pairs.into_iter().collect();
        Self::of_sorted_pairs(set)
    }

    fn of_sorted_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut hash = FNV_OFFSET_BASIS;
        let mut add = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(FNV_PRIME);
            }
        };
        for (name, value) in pairs {
            add(name.as_bytes());
            add(&[SEPARATOR]);
            add(value.as_bytes());
            add(&[SEPARATOR]);
        }
        Self(hash)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The text was not 1 to 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fingerprint {0:?}: expected up to 16 hex digits")]
pub struct ParseFingerprintError(String);

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseFingerprintError(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(Self)
            .map_err(|_| ParseFingerprintError(s.to_owned()))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label_set as labels;

    #[test]
    fn empty_set_is_the_fnv_offset_basis() {
        // prometheus/common model/fingerprinting_test.go: TestMetricToFingerprint, empty set.
        assert_eq!(
            Fingerprint::of_labels(&BTreeMap::new()).0,
            14_695_981_039_346_656_037
        );
        assert_eq!(
            Fingerprint::of_labels(&BTreeMap::new()).to_string(),
            "cbf29ce484222325"
        );
    }

    #[test]
    fn matches_prometheus_common_test_vector() {
        // prometheus/common model/fingerprinting_test.go: TestMetricToFingerprint.
        let set = labels(&[("name", "garland, briggs"), ("fear", "love is not enough")]);
        assert_eq!(Fingerprint::of_labels(&set).0, 5_799_056_148_416_392_346);
    }

    #[test]
    fn matches_a_fingerprint_computed_by_alertmanager() {
        // From a webhook a real Alertmanager 0.25 delivered (tests/data/alertmanager-0.25-webhook.json).
        let set = labels(&[
            ("alertname", "TestbedAlwaysFiring"),
            ("service", "heart"),
            ("severity", "warning"),
        ]);
        assert_eq!(Fingerprint::of_labels(&set).to_string(), "39f094049f559d7d");
    }

    #[test]
    fn order_of_pairs_does_not_matter() {
        let a = Fingerprint::of_pairs([("alertname", "Down"), ("job", "heart")]);
        let b = Fingerprint::of_pairs([("job", "heart"), ("alertname", "Down")]);
        assert_eq!(a, b);
        assert_ne!(
            a,
            Fingerprint::of_pairs([("alertname", "Down"), ("job", "brain")])
        );
    }

    #[test]
    fn separator_keeps_name_and_value_apart() {
        let a = Fingerprint::of_pairs([("ab", "c")]);
        let b = Fingerprint::of_pairs([("a", "bc")]);
        assert_ne!(a, b);
    }

    #[test]
    fn prints_sixteen_lowercase_hex_digits_and_parses_back() {
        let fp = Fingerprint(0xab);
        assert_eq!(fp.to_string(), "00000000000000ab");
        assert_eq!("00000000000000AB".parse::<Fingerprint>(), Ok(fp));
        assert!("".parse::<Fingerprint>().is_err());
        assert!("0123456789abcdef0".parse::<Fingerprint>().is_err());
        assert!("+1".parse::<Fingerprint>().is_err());
        assert_eq!(serde_json::to_string(&fp).unwrap(), "\"00000000000000ab\"");
    }
}
