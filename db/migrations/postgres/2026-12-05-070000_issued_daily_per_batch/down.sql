DROP TRIGGER issued_daily_count ON certificates;
CREATE TRIGGER issued_daily_count AFTER INSERT OR UPDATE OF status ON certificates
    FOR EACH ROW EXECUTE FUNCTION issued_daily_count();
