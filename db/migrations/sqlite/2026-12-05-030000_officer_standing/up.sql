-- Issue 15, item 2: approvals count only from officers who held the role before what they
-- approve was made, and whose credentials nobody else reset since. Unix microseconds.
-- `officer_since`: when the officer role began to count (init, or the quorum granting it);
-- NULL while a grant waits and for users who are no officers.
-- `credentials_reset_at`: when someone else last gave the user a one-time password.
ALTER TABLE users ADD COLUMN officer_since BIGINT;
ALTER TABLE users ADD COLUMN credentials_reset_at BIGINT;
-- Officers from before this rule keep counting, as officers since their account's creation.
UPDATE users SET officer_since = created_at
    WHERE (',' || roles || ',') LIKE '%,officer,%';

-- Two more operations: granting the officer role, resetting an officer's password. SQLite
-- cannot change a CHECK constraint in place: the two tables are rebuilt, rows kept.
CREATE TABLE operations_v2 (
    id BIGINT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL
        CHECK (kind IN ('create_admin', 'destroy_key', 'export_key', 'import_key', 'grant_officer',
            'reset_officer')),
    target TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approvals_needed BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'rejected', 'failed')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_by TEXT,
    reason TEXT
);
INSERT INTO operations_v2 SELECT id, kind, target, requested_by, approvals_needed, status,
    created_at, expires_at, decided_by, reason FROM operations;
CREATE TABLE operation_approvals_v2 (
    operation_id BIGINT NOT NULL REFERENCES operations_v2 (id),
    officer TEXT NOT NULL,
    comment TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (operation_id, officer)
);
INSERT INTO operation_approvals_v2 SELECT operation_id, officer, comment, at
    FROM operation_approvals;
DROP TABLE operation_approvals;
DROP TABLE operations;
ALTER TABLE operations_v2 RENAME TO operations;
ALTER TABLE operation_approvals_v2 RENAME TO operation_approvals;
CREATE INDEX operations_by_target ON operations (kind, target, status);
