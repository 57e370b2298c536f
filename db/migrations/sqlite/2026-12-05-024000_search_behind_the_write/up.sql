-- The trigram index catches up behind the write (issue 21): a certificate's row no longer
-- feeds certificates_search in the transaction that inserts it. The database writer indexes
-- every row past `upto` in one statement at most a quarter of a second later, so FTS5 writes
-- one segment per catch-up instead of one per group commit. A search reads the index up to
-- `upto` and scans the rows past it (a quarter of a second's worth) with LIKE, so it misses
-- nothing in between.
CREATE TABLE certificates_search_upto (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    upto BIGINT NOT NULL
);
INSERT INTO certificates_search_upto (id, upto)
    SELECT 1, COALESCE(MAX(rowid), 0) FROM certificates;
DROP TRIGGER certificates_search_insert;
-- Rows past `upto` are not in the index yet: there is nothing to take out of it.
DROP TRIGGER certificates_search_delete;
CREATE TRIGGER certificates_search_delete AFTER DELETE ON certificates
WHEN old.rowid <= (SELECT upto FROM certificates_search_upto) BEGIN
    INSERT INTO certificates_search (certificates_search, rowid, search)
        VALUES ('delete', old.rowid, old.search);
END;
DROP TRIGGER certificates_search_update;
CREATE TRIGGER certificates_search_update AFTER UPDATE OF search ON certificates
WHEN old.rowid <= (SELECT upto FROM certificates_search_upto) BEGIN
    INSERT INTO certificates_search (certificates_search, rowid, search)
        VALUES ('delete', old.rowid, old.search);
    INSERT INTO certificates_search (rowid, search) VALUES (new.rowid, new.search);
END;
