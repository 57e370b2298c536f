-- The new kinds' rows cannot go back under the old constraint: they are removed.
DELETE FROM operation_approvals WHERE operation_id IN
    (SELECT id FROM operations WHERE kind IN ('grant_officer', 'reset_officer'));
DELETE FROM operations WHERE kind IN ('grant_officer', 'reset_officer');
CREATE TABLE operations_v1 (
    id BIGINT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('create_admin', 'destroy_key', 'export_key', 'import_key')),
    target TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    approvals_needed BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'rejected', 'failed')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_by TEXT,
    reason TEXT
);
INSERT INTO operations_v1 SELECT id, kind, target, requested_by, approvals_needed, status,
    created_at, expires_at, decided_by, reason FROM operations;
CREATE TABLE operation_approvals_v1 (
    operation_id BIGINT NOT NULL REFERENCES operations_v1 (id),
    officer TEXT NOT NULL,
    comment TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (operation_id, officer)
);
INSERT INTO operation_approvals_v1 SELECT operation_id, officer, comment, at
    FROM operation_approvals;
DROP TABLE operation_approvals;
DROP TABLE operations;
ALTER TABLE operations_v1 RENAME TO operations;
ALTER TABLE operation_approvals_v1 RENAME TO operation_approvals;
CREATE INDEX operations_by_target ON operations (kind, target, status);
ALTER TABLE users DROP COLUMN credentials_reset_at;
ALTER TABLE users DROP COLUMN officer_since;
