-- Code signing (issue 7): keys held in the key store for their owners, and every signature
-- made with them. The SQLite migration of the same name is the same schema in that
-- dialect. Times are unix microseconds (BIGINT).

-- A key is bound to its owner when generated, then to the request for its certificate (the
-- certificate is found through requests.serial once issued) or directly to a certificate,
-- or retired (it never signs then).
CREATE TABLE codesign_keys (
    label TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    profile TEXT NOT NULL,
    key_type TEXT NOT NULL CHECK (key_type IN ('p256', 'p384')),
    public_key BYTEA NOT NULL,
    request_id BIGINT UNIQUE REFERENCES requests (id),
    serial TEXT UNIQUE REFERENCES certificates (serial),
    retired TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX codesign_keys_by_owner ON codesign_keys (owner, label);

-- Ids are given by Keyhold (max + 1 under the write lock), as for requests.
CREATE TABLE codesign_signatures (
    id BIGINT PRIMARY KEY NOT NULL,
    label TEXT NOT NULL REFERENCES codesign_keys (label),
    caller TEXT NOT NULL,
    serial TEXT NOT NULL,
    digest_algorithm TEXT NOT NULL CHECK (digest_algorithm IN ('sha256', 'sha384')),
    digest TEXT NOT NULL,
    at BIGINT NOT NULL
);
-- Rate limits count a key's signatures since a time; the history lists them newest first.
CREATE INDEX codesign_signatures_by_key ON codesign_signatures (label, at, id);
