ALTER TABLE codesign_keys DROP COLUMN owner_kind;
