DROP TABLE ca_revocations;
DROP INDEX revocations_crl;
ALTER TABLE revocations DROP COLUMN not_after;
ALTER TABLE revocations DROP COLUMN issuer;
