-- Revocation (PostgreSQL; the SQLite migration of the same name is the same schema).
-- A revoked certificate has status 'revoked' in `certificates` and one row here: when, why
-- (the RFC 5280 CRLReason code) and, if given, since when its key is suspect (unix
-- microseconds). A table of its own rather than columns on `certificates`, which is at
-- diesel's 16-column limit.
CREATE TABLE revocations (
    serial TEXT PRIMARY KEY NOT NULL REFERENCES certificates (serial),
    revoked_at BIGINT NOT NULL,
    reason INTEGER NOT NULL CHECK (reason IN (0, 1, 2, 3, 4, 5, 6, 9, 10)),
    invalidity_date BIGINT
);
-- What a CRL lists: an issuer's revoked certificates that have not expired.
CREATE INDEX certificates_revoked ON certificates (issuer, status, not_after);

-- Each issuer's last CRL number. Allocated by UPDATE inside a write transaction, so it
-- strictly increases across restarts and across processes sharing the database.
CREATE TABLE crl_numbers (
    issuer TEXT PRIMARY KEY NOT NULL,
    last BIGINT NOT NULL CHECK (last > 0)
);
