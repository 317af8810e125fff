//! Property tests: valid messages round-trip; no input makes the parser panic.

use alertmanager::webhook::{Alert, Status, WebhookMessage};
use alertmanager::{Fingerprint, LabelSet};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,12}"
}

fn label_value() -> impl Strategy<Value = String> {
    // Any Unicode, control characters and quotes included.
    ".{0,16}"
}

fn labels() -> impl Strategy<Value = LabelSet> {
    (
        btree_map(label_name(), label_value(), 0..5),
        "[A-Za-z][A-Za-z0-9]{0,20}",
    )
        .prop_map(|(mut set, alertname)| {
            set.insert("alertname".to_owned(), alertname);
            set
        })
}

fn time() -> impl Strategy<Value = OffsetDateTime> {
    // 1970..2100, at any nanosecond, in any whole-minute offset RFC 3339 can express.
    (0i128..4_102_444_800_000_000_000, -(23 * 60)..=(23 * 60i32)).prop_map(|(nanos, minutes)| {
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .unwrap()
            .to_offset(UtcOffset::from_whole_seconds(minutes * 60).unwrap())
    })
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Firing), Just(Status::Resolved)]
}

prop_compose! {
    fn alert()(
        status in status(),
        labels in labels(),
        annotations in btree_map(label_name(), label_value(), 0..4),
        starts_at in time(),
        ends_at in proptest::option::of(time()),
        generator_url in ".{0,30}",
        fingerprint in any::<u64>(),
    ) -> Alert {
        Alert { status, labels, annotations, starts_at, ends_at, generator_url, fingerprint: Fingerprint(fingerprint) }
    }
}

prop_compose! {
    fn message()(
        group_key in ".{0,40}",
        truncated_alerts in any::<u64>(),
        status in status(),
        receiver in ".{0,20}",
        group_labels in btree_map(label_name(), label_value(), 0..3),
        common_labels in btree_map(label_name(), label_value(), 0..3),
        common_annotations in btree_map(label_name(), label_value(), 0..3),
        external_url in ".{0,30}",
        alerts in vec(alert(), 1..4),
    ) -> WebhookMessage {
        WebhookMessage {
            version: "4".to_owned(),
            group_key, truncated_alerts, status, receiver, group_labels, common_labels,
            common_annotations, external_url, alerts,
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,10}".prop_map(Value::String),
        Just(Value::String("4".into())),
        Just(Value::String("firing".into())),
        Just(Value::String("0001-01-01T00:00:00Z".into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(
                prop_oneof![
                    Just("version".to_owned()),
                    Just("alerts".to_owned()),
                    Just("labels".to_owned()),
                    Just("alertname".to_owned()),
                    Just("status".to_owned()),
                    Just("startsAt".to_owned()),
                    Just("endsAt".to_owned()),
                    ".{0,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_messages_round_trip(msg in message()) {
        let bytes = serde_json::to_vec(&msg).unwrap();
        let parsed = WebhookMessage::from_slice(&bytes).unwrap();
        prop_assert_eq!(&parsed, &msg);
        let derived: WebhookMessage = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(&derived, &msg);
    }

    #[test]
    fn built_messages_parse_back_with_their_fingerprints(alerts in vec(alert(), 1..5)) {
        let msg = WebhookMessage::builder("r").group_by(["alertname"]).alerts(alerts).build();
        let bytes = serde_json::to_vec(&msg).unwrap();
        let parsed = WebhookMessage::from_slice(&bytes).unwrap();
        for alert in &parsed.alerts {
            prop_assert_eq!(alert.fingerprint, Fingerprint::of_labels(&alert.labels));
            prop_assert_eq!(alert.is_firing(), alert.ends_at.is_none());
        }
        prop_assert_eq!(parsed.status == Status::Firing, parsed.alerts.iter().any(Alert::is_firing));
        prop_assert_eq!(parsed, msg);
    }

    #[test]
    fn from_slice_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
        let _ = WebhookMessage::from_slice(&bytes);
    }

    #[test]
    fn from_slice_never_panics_on_arbitrary_json(value in json_value()) {
        let _ = WebhookMessage::from_slice(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn from_slice_never_panics_on_damaged_payloads(
        msg in message(),
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let len = cut.index(bytes.len() + 1);
        if let Err(e) = WebhookMessage::from_slice(&bytes[..len]) {
            // Every error names a path or a position an HTTP layer can report.
            let body = serde_json::to_value(&e).unwrap();
            prop_assert!(body["error"].as_str().is_some_and(|s| !s.is_empty()));
        }
    }
}
