-- CRL reads and revoked CA certificates (SQLite; the PostgreSQL migration of the same name is
-- the same schema).
--
-- A CRL lists an issuer's unexpired revoked certificates. Joining `revocations` to
-- `certificates` for a million of them costs a million index seeks (seconds); so each
-- revocation row also carries its certificate's issuer and notAfter (both fixed when the
-- certificate is issued, copied in the transaction that revokes it), and one covering index
-- gives a CRL's whole list, in serial order, from a single sequential scan. The CRL's
-- self-check compares that list with a count over `certificates` itself, so a row whose
-- copies were wrong (or missing: the empty defaults below) stops a CRL instead of vanishing
-- from it.
ALTER TABLE revocations ADD COLUMN issuer TEXT NOT NULL DEFAULT '';
ALTER TABLE revocations ADD COLUMN not_after BIGINT NOT NULL DEFAULT 0;
UPDATE revocations SET
    issuer = (SELECT c.issuer FROM certificates c WHERE c.serial = revocations.serial),
    not_after = (SELECT c.not_after FROM certificates c WHERE c.serial = revocations.serial);
CREATE INDEX revocations_crl
    ON revocations (issuer, serial, not_after, revoked_at, reason, invalidity_date);

-- CA certificates revoked by the CA that signed them (`keyhold revoke-ca`): the parent's CRL
-- lists them. A CA certificate is not a row of `certificates` (the ceremony makes it), so its
-- notAfter is kept here. Reasons: keyCompromise, cACompromise, affiliationChanged,
-- superseded, cessationOfOperation. Times in unix microseconds.
CREATE TABLE ca_revocations (
    parent TEXT NOT NULL,
    serial TEXT NOT NULL,
    ca TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL,
    reason INTEGER NOT NULL CHECK (reason IN (1, 2, 3, 4, 5)),
    revoked_by TEXT NOT NULL,
    PRIMARY KEY (parent, serial)
);
