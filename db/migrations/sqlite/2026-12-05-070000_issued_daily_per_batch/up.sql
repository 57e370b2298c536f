-- issued_daily is no longer counted by a trigger as each certificate becomes valid: the
-- writer adds up a batch's certificates and writes one row per day and requester at the
-- end of the batch, in the same transaction (db/src/writer.rs). Rows inserted already
-- valid (fills, imports) are still counted by issued_daily_insert.
DROP TRIGGER issued_daily_update;
