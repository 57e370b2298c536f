-- ACME state (issue 17): accounts, their orders, authorizations and challenges, and the
-- external account binding keys administrators hand out. Times are unix microseconds.
-- Ids are random (128 bits, hex): they appear in URLs and reveal no counts.
CREATE TABLE acme_eab_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    -- Profiles the key's accounts may order under, comma separated; the first is the default.
    profiles TEXT NOT NULL,
    -- DNS suffixes (".team-a.internal") the key's accounts may name; empty: the profile decides.
    names TEXT NOT NULL,
    -- The HMAC key, sealed (AES-256-GCM) under the server's ACME secret; never in clear.
    hmac_sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE acme_accounts (
    id TEXT PRIMARY KEY NOT NULL,
    -- RFC 7638 thumbprint of the account key: one account per key.
    thumbprint TEXT NOT NULL UNIQUE,
    jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    contact TEXT NOT NULL,
    eab_kid TEXT REFERENCES acme_eab_keys (kid),
    created_at BIGINT NOT NULL
);
CREATE TABLE acme_orders (
    id TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES acme_accounts (id),
    -- The stored status; pending and ready are recomputed from the authorizations.
    status TEXT NOT NULL,
    -- "dns:a.internal ip:10.0.0.1", in the order's order.
    identifiers TEXT NOT NULL,
    profile TEXT NOT NULL,
    not_before BIGINT,
    not_after BIGINT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    serial TEXT,
    error TEXT,
    replaces TEXT
);
CREATE INDEX acme_orders_by_account ON acme_orders (account_id, created_at);
CREATE TABLE acme_authzs (
    id TEXT PRIMARY KEY NOT NULL,
    order_id TEXT NOT NULL REFERENCES acme_orders (id),
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    wildcard BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX acme_authzs_by_order ON acme_authzs (order_id);
-- The per-identifier rate limit counts recent authorizations for a name.
CREATE INDEX acme_authzs_by_value ON acme_authzs (value, expires_at);
CREATE TABLE acme_challenges (
    id TEXT PRIMARY KEY NOT NULL,
    authz_id TEXT NOT NULL REFERENCES acme_authzs (id),
    kind TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL,
    validated_at BIGINT,
    error TEXT
);
CREATE INDEX acme_challenges_by_authz ON acme_challenges (authz_id);
CREATE INDEX acme_challenges_by_status ON acme_challenges (status);
