-- People who sign in to the web UI. `password_hash` is an Argon2id PHC string; `roles` a
-- comma-separated list of admin, officer, auditor, requester. Names are never reused, so the
-- audit log's actor names stay unambiguous. Times: unix microseconds.
CREATE TABLE users (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    disabled BOOLEAN NOT NULL,
    must_change_password BOOLEAN NOT NULL,
    failed_logins INTEGER NOT NULL,
    locked_until BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    password_changed_at BIGINT NOT NULL
);

-- Web sessions, by the SHA-256 of the session id (the id itself is only in the cookie).
CREATE TABLE sessions (
    id_hash BLOB PRIMARY KEY NOT NULL,
    user_name TEXT NOT NULL REFERENCES users (name),
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX sessions_user_name ON sessions (user_name);
CREATE INDEX sessions_last_seen ON sessions (last_seen);
