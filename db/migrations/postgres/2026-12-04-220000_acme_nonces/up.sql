-- ACME anti-replay nonces (issue 17): nonces are minted without a write (an HMAC under a
-- key the nodes share, see ca-core acme/nonce.rs); a redeemed nonce's id is recorded here
-- once, so a second redemption fails on every node. Rows past expires_at (unix microseconds)
-- can never pass the age check again and are swept.
CREATE TABLE acme_nonces (
    id BYTEA PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX acme_nonces_by_expiry ON acme_nonces (expires_at);
