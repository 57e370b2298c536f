-- API tokens for the HTTP API. Only the SHA-256 of a token is stored; names are never
-- reused (a revoked token keeps its row), so the audit log's actor names stay unambiguous.
-- `profiles` is a comma-separated list; empty means every profile. Times: unix microseconds.
CREATE TABLE api_tokens (
    name TEXT PRIMARY KEY NOT NULL,
    hash BYTEA NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('requester', 'officer', 'auditor', 'admin')),
    profiles TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    created_by TEXT NOT NULL
);
