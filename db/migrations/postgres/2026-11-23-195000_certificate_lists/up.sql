-- What the certificate list and the dashboard need to stay fast at millions of rows
-- (PostgreSQL; the SQLite migration of the same name does the same with its own tools).

-- Sorting by expiry, with a (not_after, serial) keyset, and the dashboard's range counts
-- of valid and expiring certificates.
DROP INDEX certificates_by_not_after;
CREATE INDEX certificates_by_expiry ON certificates (not_after, serial);
CREATE INDEX certificates_by_status_expiry ON certificates (status, not_after, serial);

-- What an OCSP responder polls for: revocations made by other processes since it last
-- looked.
CREATE INDEX revocations_by_time ON revocations (revoked_at);

-- Substring search: a trigram index over `search` (pg_trgm ships with PostgreSQL and is a
-- trusted extension: the database's owner may create it). It lives in `public`, so that
-- databases holding several Keyhold schemas share it.
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
CREATE INDEX certificates_search_trgm ON certificates USING gin (search public.gin_trgm_ops);

-- Certificates issued per UTC day and requester, for the dashboard's 90-day chart:
-- counted when a certificate becomes valid (revoking it later leaves the count alone).
-- Keyhold writes through one writer, so the counter rows see no lock contention.
CREATE TABLE issued_daily (
    day BIGINT NOT NULL,
    requester TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (day, requester)
);
INSERT INTO issued_daily (day, requester, n)
    SELECT created_at / 86400000000, requester, COUNT(*) FROM certificates
    WHERE status IN ('valid', 'revoked') GROUP BY created_at / 86400000000, requester;
CREATE FUNCTION issued_daily_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('valid', 'revoked')
       AND (TG_OP = 'INSERT' OR OLD.status NOT IN ('valid', 'revoked')) THEN
        INSERT INTO issued_daily (day, requester, n)
            VALUES (NEW.created_at / 86400000000, NEW.requester, 1)
            ON CONFLICT (day, requester) DO UPDATE SET n = issued_daily.n + 1;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER issued_daily_count AFTER INSERT OR UPDATE OF status ON certificates
    FOR EACH ROW EXECUTE FUNCTION issued_daily_count();
