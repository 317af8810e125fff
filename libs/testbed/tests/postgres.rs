//! PostgreSQL starts, serves, survives a stop/start with its data, and goes away on drop.

use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use testbed::Postgres;

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} hung"))
}

#[tokio::test]
async fn serves_stops_and_starts_again_with_the_data_kept() {
    let mut pg = Postgres::start().await;
    let url = pg.url();
    assert!(url.starts_with("postgres://testbed:"), "{url}");

    let mut conn = connect(&url).await.expect("connect with the password user");
    sqlx::query("CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO users VALUES (1, 'ada')")
        .execute(&mut conn)
        .await
        .unwrap();
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(db, "testbed");
    drop(conn);

    let wrong = url.replace(":testbed-password@", ":wrong@");
    assert!(
        connect(&wrong).await.is_err(),
        "a wrong password must be refused"
    );

    pg.stop().await;
    assert!(!pg.is_running());
    assert!(
        connect(&url).await.is_err(),
        "connections fail while stopped"
    );

    pg.start_again().await;
    assert_eq!(pg.url(), url, "same port after a restart");
    let mut conn = connect(&url).await.expect("connect after restart");
    let name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(name, "ada");
    drop(conn);

    let data_dir = pg.data_dir();
    drop(pg);
    assert!(!data_dir.exists(), "the data dir is removed on drop");
    assert!(
        connect(&url).await.is_err(),
        "the server is gone after drop"
    );
}
