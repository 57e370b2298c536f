INSERT INTO certificates_search (rowid, search)
    SELECT rowid, search FROM certificates
    WHERE rowid > (SELECT upto FROM certificates_search_upto);
DROP TRIGGER certificates_search_update;
DROP TRIGGER certificates_search_delete;
DROP TABLE certificates_search_upto;
CREATE TRIGGER certificates_search_insert AFTER INSERT ON certificates BEGIN
    INSERT INTO certificates_search (rowid, search) VALUES (new.rowid, new.search);
END;
CREATE TRIGGER certificates_search_delete AFTER DELETE ON certificates BEGIN
    INSERT INTO certificates_search (certificates_search, rowid, search)
        VALUES ('delete', old.rowid, old.search);
END;
CREATE TRIGGER certificates_search_update AFTER UPDATE OF search ON certificates BEGIN
    INSERT INTO certificates_search (certificates_search, rowid, search)
        VALUES ('delete', old.rowid, old.search);
    INSERT INTO certificates_search (rowid, search) VALUES (new.rowid, new.search);
END;
