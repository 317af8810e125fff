//! End to end through a database outage: gateway → user-service → a real PostgreSQL that is
//! stopped and started again (testbed), all on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

async fn get(
    client: &reqwest::Client,
    url: String,
) -> (u16, reqwest::header::HeaderMap, Value, Duration) {
    let start = Instant::now();
    let resp = client.get(url).send().await.unwrap();
    let took = start.elapsed();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body, took)
}

async fn wait_status(client: &reqwest::Client, url: &str, want: u16, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (status, _, body, _) = get(client, url.to_owned()).await;
        if status == want {
            return body;
        }
        assert!(
            start.elapsed() < within,
            "{url} still {status} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_database_outage_is_a_fast_503_and_recovery_keeps_the_data() {
    let mut pg = testbed::Postgres::start().await;
    let users = common::user_service(&pg.url()).await;
    let heart = common::heart().await;
    let (ctx, router) = common::gateway_router(api_gateway::Config::with_upstreams(
        &users.url(),
        &heart.url(),
        &common::closed_url(),
    ));
    let gateway = common::serve_assembled(ctx, router).await;
    let client = testbed::http_client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let created = client
        .post(format!("{}/users", gateway.url()))
        .json(&json!({"name": "Survivor", "email": "survivor@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_i64().unwrap();

    pg.stop().await;

    // The gateway answers fast, passing on user-service's 503 with Retry-After.
    for path in [
        format!("/user/{id}"),
        format!("/users/{id}"),
        "/users".to_owned(),
    ] {
        let (status, headers, body, took) = get(&client, format!("{}{path}", gateway.url())).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(took < Duration::from_secs(1), "{path} took {took:?}");
        assert_eq!(body["error"]["code"], "unavailable", "{path}: {body}");
        assert!(headers.contains_key("retry-after"), "{path}: {headers:?}");
    }
    // user-service is not ready, naming the database; the gateway stays ready and says why.
    let not_ready = wait_status(
        &client,
        &format!("{}/readyz", users.url()),
        503,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(not_ready["failing"][0]["check"], "database", "{not_ready}");
    assert!(
        not_ready["failing"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("postgresql")
    );
    let (status, _, _, _) = get(&client, format!("{}/readyz", gateway.url())).await;
    assert_eq!(status, 200);
    let (_, _, upstreams, _) = get(&client, format!("{}/upstreams", gateway.url())).await;
    let user_service = upstreams["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "user-service")
        .unwrap();
    assert_eq!(user_service["status"], "not_ready", "{upstreams}");
    // Other organs are unaffected.
    let (status, _, _, _) = get(&client, format!("{}/beat", gateway.url())).await;
    assert_eq!(status, 200);

    pg.start_again().await;
    wait_status(
        &client,
        &format!("{}/readyz", users.url()),
        200,
        Duration::from_secs(10),
    )
    .await;
    let (status, _, user, _) = get(&client, format!("{}/user/{id}", gateway.url())).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        user, created,
        "the user created before the outage is still there"
    );
}
