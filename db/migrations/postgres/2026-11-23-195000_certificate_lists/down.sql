DROP TRIGGER issued_daily_count ON certificates;
DROP FUNCTION issued_daily_count();
DROP TABLE issued_daily;
DROP INDEX certificates_search_trgm;
DROP INDEX revocations_by_time;
DROP INDEX certificates_by_status_expiry;
DROP INDEX certificates_by_expiry;
CREATE INDEX certificates_by_not_after ON certificates (not_after);
