-- Sensitive operations under quorum (issue 7) other than issuance: creating an
-- administrator, destroying a code-signing key. One is recorded pending, distinct officers
-- (never the one who asked) approve it, and it is carried out once the quorum, counted
-- again from the accounts as they stand, is reached. Ids are given by Keyhold (max + 1
-- under the write lock), as for requests. Times: unix microseconds.
CREATE TABLE operations (
    id BIGINT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('create_admin', 'destroy_key')),
    target TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approvals_needed BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'rejected', 'failed')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_by TEXT,
    reason TEXT
);
CREATE INDEX operations_by_target ON operations (kind, target, status);

CREATE TABLE operation_approvals (
    operation_id BIGINT NOT NULL REFERENCES operations (id),
    officer TEXT NOT NULL,
    comment TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (operation_id, officer)
);
