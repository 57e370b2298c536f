-- Keyhold's first schema (PostgreSQL). The SQLite migration of the same name is the same
-- schema in that dialect: keep the two in step. Times are unix microseconds (BIGINT).

CREATE TABLE issuers (
    id TEXT PRIMARY KEY NOT NULL,
    certificate BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Ids are given by Keyhold (max + 1 under the write lock), never by the database, so both
-- backends number alike.
CREATE TABLE requests (
    id BIGINT PRIMARY KEY NOT NULL,
    profile TEXT NOT NULL,
    requester TEXT NOT NULL,
    csr_der BYTEA NOT NULL,
    subject TEXT NOT NULL,
    sans TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'issued', 'rejected', 'failed', 'expired')),
    approvals_needed BIGINT NOT NULL CHECK (approvals_needed >= 0),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_by TEXT,
    reason TEXT,
    serial TEXT
);
CREATE INDEX requests_by_status ON requests (status, id);
CREATE INDEX requests_by_requester ON requests (requester, id);

CREATE TABLE approvals (
    request_id BIGINT NOT NULL REFERENCES requests (id),
    officer TEXT NOT NULL,
    comment TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (request_id, officer)
);

-- `search` is the lowercased serial, subject and SANs, for case-insensitive substring search
-- that behaves the same on both backends. At most one certificate per request.
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY NOT NULL,
    issuer TEXT NOT NULL REFERENCES issuers (id),
    subject TEXT NOT NULL,
    sans TEXT NOT NULL,
    search TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    profile TEXT NOT NULL,
    requester TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('reserved', 'valid', 'revoked', 'failed')),
    der BYTEA,
    created_at BIGINT NOT NULL,
    request_id BIGINT UNIQUE REFERENCES requests (id),
    failure TEXT
);
-- Lists are newest first with a (created_at, serial) keyset; each filter's index ends in it.
CREATE INDEX certificates_by_created ON certificates (created_at, serial);
CREATE INDEX certificates_by_not_after ON certificates (not_after);
CREATE INDEX certificates_by_profile ON certificates (profile, created_at, serial);
CREATE INDEX certificates_by_status ON certificates (status, created_at, serial);
CREATE INDEX certificates_by_requester ON certificates (requester, created_at, serial);
CREATE INDEX certificates_by_issuer_status ON certificates (issuer, status);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash BYTEA NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);

-- No foreign key to audit_log: a checkpoint must outlive the entry it names, so that
-- cutting entries from the log shows up as a checkpoint pointing at nothing.
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY NOT NULL,
    head_hash BYTEA NOT NULL CHECK (octet_length(head_hash) = 32),
    at BIGINT NOT NULL,
    key_uri TEXT NOT NULL,
    signature BYTEA NOT NULL
);

-- The chain head, one row. Every write transaction updates it first: on PostgreSQL that
-- row lock serialises audit appends across processes; on SQLite, BEGIN IMMEDIATE already
-- does. Entries deleted from the end of audit_log do not move it.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
