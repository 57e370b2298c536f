-- What the certificate list and the dashboard need to stay fast at millions of rows
-- (SQLite; the PostgreSQL migration of the same name does the same with its own tools).

-- Sorting by expiry, with a (not_after, serial) keyset, and the dashboard's range counts
-- of valid and expiring certificates.
DROP INDEX certificates_by_not_after;
CREATE INDEX certificates_by_expiry ON certificates (not_after, serial);
CREATE INDEX certificates_by_status_expiry ON certificates (status, not_after, serial);

-- What an OCSP responder polls for: revocations made by other processes since it last
-- looked.
CREATE INDEX revocations_by_time ON revocations (revoked_at);

-- Substring search: a trigram index over `search`, kept in step by triggers. An
-- external-content table, so the text is stored once.
CREATE VIRTUAL TABLE certificates_search USING fts5(
    search, content = 'certificates', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO certificates_search (rowid, search) SELECT rowid, search FROM certificates;
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

-- Certificates issued per UTC day and requester, for the dashboard's 90-day chart:
-- counted when a certificate becomes valid (revoking it later leaves the count alone).
CREATE TABLE issued_daily (
    day BIGINT NOT NULL,
    requester TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (day, requester)
);
INSERT INTO issued_daily (day, requester, n)
    SELECT created_at / 86400000000, requester, COUNT(*) FROM certificates
    WHERE status IN ('valid', 'revoked') GROUP BY created_at / 86400000000, requester;
CREATE TRIGGER issued_daily_insert AFTER INSERT ON certificates
WHEN new.status IN ('valid', 'revoked') BEGIN
    INSERT INTO issued_daily (day, requester, n)
        VALUES (new.created_at / 86400000000, new.requester, 1)
        ON CONFLICT (day, requester) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER issued_daily_update AFTER UPDATE OF status ON certificates
WHEN old.status NOT IN ('valid', 'revoked') AND new.status IN ('valid', 'revoked') BEGIN
    INSERT INTO issued_daily (day, requester, n)
        VALUES (new.created_at / 86400000000, new.requester, 1)
        ON CONFLICT (day, requester) DO UPDATE SET n = n + 1;
END;
