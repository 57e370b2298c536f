CREATE TRIGGER issued_daily_update AFTER UPDATE OF status ON certificates
WHEN old.status NOT IN ('valid', 'revoked') AND new.status IN ('valid', 'revoked') BEGIN
    INSERT INTO issued_daily (day, requester, n)
        VALUES (new.created_at / 86400000000, new.requester, 1)
        ON CONFLICT (day, requester) DO UPDATE SET n = n + 1;
END;
