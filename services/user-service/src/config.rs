//! The service's own configuration: where the users live and how long database work may take.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | `sqlite://organism-users.db` | `postgres://…` (or `postgresql://…`) or `sqlite://…`; a SQLite file is created if missing and runs in WAL mode |
//! | `DB_MAX_CONNECTIONS` | 10 | pool size |
//! | `DB_ACQUIRE_TIMEOUT` | `500ms` | longest wait for a pooled connection (including connecting) before a 503 |
//! | `DB_QUERY_TIMEOUT` | `1500ms` | longest one database operation may take, acquire included, before a 503 |
//! | `CHAOS_TOKEN` | unset | bearer token for `POST`/`DELETE /chaos` (open when unset) |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use service_kit::EnvReader;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// The database used when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://organism-users.db";

/// Where the users live, parsed from `DATABASE_URL`. Its `Debug` and `Display` never show a
/// password.
#[derive(Clone)]
pub enum DatabaseConfig {
    /// A PostgreSQL server.
    Postgres(PgConnectOptions),
    /// An embedded SQLite file.
    Sqlite(SqliteConnectOptions),
}

impl DatabaseConfig {
    /// Parses a `postgres://`, `postgresql://` or `sqlite:` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url)
                .map(|o| Self::Postgres(o.application_name(crate::SERVICE)))
                .map_err(|e| {
                    format!(
                        "not a valid PostgreSQL URL: {}",
                        redact(&e.to_string(), url)
                    )
                })
        } else if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)
                .map(|o| {
                    Self::Sqlite(
                        o.create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            // Every accepted write is on disk before it is acknowledged.
                            .synchronous(SqliteSynchronous::Full)
                            .busy_timeout(Duration::from_secs(1))
                            .foreign_keys(true),
                    )
                })
                .map_err(|e| format!("not a valid SQLite URL: {e}"))
        } else {
            Err("expected a postgres://… or sqlite://… URL".to_owned())
        }
    }

    /// The OpenTelemetry `db.system` value: `postgresql` or `sqlite`.
    pub fn system(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgresql",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// The database name (PostgreSQL) or file (SQLite): the `db.namespace` attribute.
    pub fn namespace(&self) -> String {
        match self {
            Self::Postgres(o) => o
                .get_database()
                .unwrap_or_else(|| o.get_username())
                .to_owned(),
            Self::Sqlite(o) => o.get_filename().display().to_string(),
        }
    }

    /// Host and port of a PostgreSQL server (`server.address`, `server.port`).
    pub fn server(&self) -> Option<(String, u16)> {
        match self {
            Self::Postgres(o) => Some((o.get_host().to_owned(), o.get_port())),
            Self::Sqlite(_) => None,
        }
    }
}

impl fmt::Display for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(o) => write!(
                f,
                "postgresql at {}:{}/{}",
                o.get_host(),
                o.get_port(),
                self.namespace()
            ),
            Self::Sqlite(o) => write!(f, "sqlite file {}", o.get_filename().display()),
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseConfig({self})")
    }
}

/// Removes the URL (which may hold a password) from a parser's message.
fn redact(message: &str, url: &str) -> String {
    message.replace(url, "<DATABASE_URL>")
}

/// The service's own configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`.
    pub database: DatabaseConfig,
    /// `DB_MAX_CONNECTIONS`.
    pub max_connections: u32,
    /// `DB_ACQUIRE_TIMEOUT` (a duration such as `500ms`; at least `1ms`).
    pub acquire_timeout: Duration,
    /// `DB_QUERY_TIMEOUT` (a duration such as `1500ms`; at least `1ms`).
    pub query_timeout: Duration,
    /// `CHAOS_TOKEN`.
    pub chaos_token: Option<SecretString>,
}

impl Config {
    /// Reads the service's own variables; problems are recorded on `reader`.
    pub fn read(reader: &mut EnvReader<'_>) -> Self {
        let default =
            || DatabaseConfig::parse(DEFAULT_DATABASE_URL).expect("the default URL is valid");
        // Not `parse_with`: its message would quote the value, and the URL may hold a password.
        let database = match reader.optional("DATABASE_URL") {
            None => default(),
            Some(raw) => DatabaseConfig::parse(&raw).unwrap_or_else(|reason| {
                reader.error("DATABASE_URL", reason);
                default()
            }),
        };
        let max_connections =
            reader.parse_with("DB_MAX_CONNECTIONS", 10, |raw| match raw.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err("expected a whole number from 1 to 1000".to_owned()),
            });
        let positive = Duration::from_millis(1)..;
        let acquire_timeout = reader.duration(
            "DB_ACQUIRE_TIMEOUT",
            Duration::from_millis(500),
            positive.clone(),
        );
        let query_timeout =
            reader.duration("DB_QUERY_TIMEOUT", Duration::from_millis(1500), positive);
        let chaos_token = chaos::Chaos::read_token(reader);
        Self {
            database,
            max_connections,
            acquire_timeout,
            query_timeout,
            chaos_token,
        }
    }

    /// A configuration over `database_url` with the default limits (for tests and tools).
    pub fn with_database_url(database_url: &str) -> Result<Self, String> {
        let env = std::collections::HashMap::from([("DATABASE_URL", database_url)]);
        let mut reader = EnvReader::new(&env);
        let config = Self::read(&mut reader);
        reader.finish().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_to_an_embedded_sqlite_file() {
        let env: HashMap<&str, &str> = HashMap::new();
        let mut reader = EnvReader::new(&env);
        let config = Config::read(&mut reader);
        reader.finish().unwrap();
        assert_eq!(config.database.system(), "sqlite");
        assert_eq!(config.database.namespace(), "organism-users.db");
        assert_eq!(config.acquire_timeout, Duration::from_millis(500));
    }

    #[test]
    fn postgres_urls_are_parsed_and_never_print_the_password() {
        let config = DatabaseConfig::parse("postgres://app:hunter2@db.example:6543/users").unwrap();
        assert_eq!(config.system(), "postgresql");
        assert_eq!(config.namespace(), "users");
        assert_eq!(config.server(), Some(("db.example".to_owned(), 6543)));
        let shown = format!("{config} {config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.example:6543/users"), "{shown}");
    }

    #[test]
    fn every_bad_variable_is_reported() {
        let env: HashMap<&str, &str> = [
            ("DATABASE_URL", "mysql://root@localhost/users"),
            ("DB_MAX_CONNECTIONS", "0"),
            ("DB_ACQUIRE_TIMEOUT", "soon"),
            ("DB_QUERY_TIMEOUT", "0s"),
        ]
        .into_iter()
        .collect();
        let mut reader = EnvReader::new(&env);
        let _ = Config::read(&mut reader);
        let text = reader.finish().unwrap_err().to_string();
        assert!(!text.contains("root@"), "the URL is never quoted: {text}");
        for var in [
            "DATABASE_URL",
            "DB_MAX_CONNECTIONS",
            "DB_ACQUIRE_TIMEOUT:",
            "DB_QUERY_TIMEOUT:",
        ] {
            assert!(text.contains(var), "{var} not named in {text}");
        }
        assert!(text.contains("postgres://"), "{text}");
    }

    #[test]
    fn the_retired_millisecond_timeouts_are_refused_naming_their_replacements() {
        let env: HashMap<&str, &str> = [
            ("DB_ACQUIRE_TIMEOUT_MS", "500"),
            ("DB_QUERY_TIMEOUT_MS", "1500"),
        ]
        .into_iter()
        .collect();
        let mut reader = EnvReader::new(&env);
        let _ = Config::read(&mut reader);
        let text = reader.finish().unwrap_err().to_string();
        for expected in [
            "DB_ACQUIRE_TIMEOUT_MS: no longer read; set DB_ACQUIRE_TIMEOUT=500ms",
            "DB_QUERY_TIMEOUT_MS: no longer read; set DB_QUERY_TIMEOUT=1s 500ms",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
    }
}
