DELETE FROM operation_approvals WHERE operation_id IN
    (SELECT id FROM operations WHERE kind IN ('grant_officer', 'reset_officer'));
DELETE FROM operations WHERE kind IN ('grant_officer', 'reset_officer');
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('create_admin', 'destroy_key', 'export_key', 'import_key'));
ALTER TABLE users DROP COLUMN credentials_reset_at;
ALTER TABLE users DROP COLUMN officer_since;
