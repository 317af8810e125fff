-- The users resource. AUTOINCREMENT: ids are never reused; e-mail addresses are unique
-- regardless of case. Timestamps are RFC 3339 text (what sqlx writes for OffsetDateTime).
CREATE TABLE users (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));
