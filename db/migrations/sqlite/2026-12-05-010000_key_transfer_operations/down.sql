-- Back to two kinds; key transfer operations are dropped with their approvals.
DELETE FROM operation_approvals WHERE operation_id IN
    (SELECT id FROM operations WHERE kind IN ('export_key', 'import_key'));
DELETE FROM operations WHERE kind IN ('export_key', 'import_key');
CREATE TABLE operations_old AS SELECT * FROM operations;
CREATE TABLE operation_approvals_old AS SELECT * FROM operation_approvals;
DROP TABLE operation_approvals;
DROP TABLE operations;

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

INSERT INTO operations SELECT id, kind, target, requested_by, approvals_needed, status,
    created_at, expires_at, decided_by, reason FROM operations_old;
INSERT INTO operation_approvals SELECT operation_id, officer, comment, at
    FROM operation_approvals_old;
DROP TABLE operation_approvals_old;
DROP TABLE operations_old;
