DELETE FROM operation_approvals WHERE operation_id IN
    (SELECT id FROM operations WHERE kind IN ('export_key', 'import_key'));
DELETE FROM operations WHERE kind IN ('export_key', 'import_key');
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('create_admin', 'destroy_key'));
