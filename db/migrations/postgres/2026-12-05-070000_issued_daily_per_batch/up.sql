-- issued_daily is no longer counted by a trigger as each certificate becomes valid: the
-- writer adds up a batch's certificates and writes one row per day and requester at the
-- end of the batch, in the same transaction (db/src/writer.rs). Each per-certificate
-- update made a new version of the same counter row. Rows inserted already valid (fills,
-- imports) are still counted.
DROP TRIGGER issued_daily_count ON certificates;
CREATE TRIGGER issued_daily_count AFTER INSERT ON certificates
    FOR EACH ROW EXECUTE FUNCTION issued_daily_count();
