//! The outbox and alert record on a real PostgreSQL (the SQL is shared with SQLite).

use alert_service::store::{AlertUpsert, Enqueued, NewRow, Store};
use testbed::Postgres;

fn row(key: &str) -> NewRow {
    NewRow {
        idem_key: key.into(),
        kind: "notification",
        channel: "hook".into(),
        group_key: "g".into(),
        status: "firing".into(),
        payload: "{}".into(),
        renotify_before: 500,
    }
}

fn alert(fp: &str, severity: &str) -> AlertUpsert {
    AlertUpsert {
        fingerprint: fp.into(),
        starts_at: 100,
        alertname: format!("A{fp}"),
        severity: severity.into(),
        labels: format!("{{\"alertname\":\"A{fp}\"}}"),
        annotations: "{}".into(),
        group_key: "g".into(),
        channels: "[\"hook\"]".into(),
        status: "firing".into(),
        resolved_at: None,
    }
}

#[tokio::test]
async fn store_works_on_postgresql() {
    let pg = Postgres::start().await;
    let s = Store::connect(&pg.url()).await.expect("connect + schema");
    let again = Store::connect(&pg.url())
        .await
        .expect("schema creation is idempotent");

    let r = s
        .ingest(
            1000,
            &[alert("01", "critical"), alert("02", "warning")],
            &[row("k1"), row("k2")],
        )
        .await
        .unwrap();
    assert!(matches!(r[0], Enqueued::New(_)));
    assert_eq!(
        s.ingest(1001, &[alert("01", "critical")], &[row("k1")])
            .await
            .unwrap()[0],
        Enqueued::Duplicate
    );

    // Two stores claiming concurrently never share a row.
    let (a, b) = tokio::join!(
        s.claim("a", 2000, 60_000, 1),
        again.claim("b", 2000, 60_000, 5)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 2);
    assert!(a.iter().all(|x| b.iter().all(|y| x.id != y.id)));
    let mut all: Vec<_> = a
        .iter()
        .map(|c| ("a", c.id.clone()))
        .chain(b.iter().map(|c| ("b", c.id.clone())))
        .collect();
    all.sort();
    assert!(s.mark_sent(&all[0].1, all[0].0, 2100).await.unwrap());
    assert!(
        s.mark_failed(&all[1].1, all[1].0, 2100, 9000, true, "gone")
            .await
            .unwrap()
    );
    // Outside the dedup window a sent row is queued again.
    // (Both were created at 1000: inside a window ending at 500 they are duplicates, outside
    // one ending at 2000 they are queued again — the sent one and the dead one.)
    let late = |k: &str| NewRow {
        renotify_before: 2000,
        ..row(k)
    };
    assert_eq!(
        s.enqueue(3000, &[row("k1")]).await.unwrap()[0],
        Enqueued::Duplicate
    );
    let r = s.enqueue(3000, &[late("k1"), late("k2")]).await.unwrap();
    assert!(r.iter().all(|e| matches!(e, Enqueued::Again(_))), "{r:?}");
    assert_eq!(s.depth().await.unwrap(), 2);

    // Alert record, escalation candidates, ack, report.
    let c = s
        .escalation_candidates(&["critical"], 2000, 1)
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].fingerprint, "01");
    assert!(s.set_escalation_level("01", 100, 1).await.unwrap());
    assert!(!s.set_escalation_level("01", 100, 1).await.unwrap());
    assert_eq!(
        s.record_ack("02", 4100, "me", "ok", Some("sil"))
            .await
            .unwrap(),
        1
    );
    let rec = s.find_alert("02").await.unwrap().unwrap();
    assert_eq!(rec.acked_by.as_deref(), Some("me"));
    assert_eq!(rec.silence_id.as_deref(), Some("sil"));
    let report = s.report(0, 10_000).await.unwrap();
    assert_eq!(report.fired, 2);
    assert_eq!(report.acknowledged, 1);
    assert_eq!(report.escalated, 1);
    assert_eq!(report.mean_ack_ms, Some(4000.0));
    assert_eq!(report.noisiest[0], ("A01".to_owned(), 2, 1));
    s.close().await;
    again.close().await;
}
