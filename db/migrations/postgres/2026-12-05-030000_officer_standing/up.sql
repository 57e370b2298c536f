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

-- Two more operations: granting the officer role, resetting an officer's password.
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('create_admin', 'destroy_key', 'export_key', 'import_key', 'grant_officer',
            'reset_officer'));
