-- Exporting and importing a wrapped key become quorum operations (issue 19): two more kinds.
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('create_admin', 'destroy_key', 'export_key', 'import_key'));
