DROP INDEX acme_nonces_by_expiry;
DROP TABLE acme_nonces;
