-- One publication for the cluster (issue 20, items 2 and 3). Times are unix microseconds.
--
-- A lease names which node instance does a piece of work that must be done once for the
-- cluster ('crl:<issuer>': build that issuer's CRL; 'ocsp': pre-sign OCSP answers) until
-- expires_at; any node takes a lease that has expired, so a dead holder is replaced.
CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
-- The current CRL of each issuer, as every node serves it. Replaced only by a higher number.
CREATE TABLE published_crls (
    issuer TEXT PRIMARY KEY NOT NULL,
    number BIGINT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    entries BIGINT NOT NULL,
    der BYTEA NOT NULL
);
-- Signed OCSP answers, shared: one row per CertID asked about (cert_id is the DER CertID
-- with its hash algorithm), signed once for the cluster and served by every node.
CREATE TABLE ocsp_answers (
    cert_id BYTEA PRIMARY KEY NOT NULL,
    serial TEXT NOT NULL,
    issuer TEXT NOT NULL,
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    der BYTEA NOT NULL
);
CREATE INDEX ocsp_answers_serial ON ocsp_answers (serial);
CREATE INDEX ocsp_answers_next_update ON ocsp_answers (next_update);
