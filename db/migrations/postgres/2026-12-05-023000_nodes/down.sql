ALTER TABLE certificates DROP COLUMN reserved_by;
DROP TABLE nodes;
