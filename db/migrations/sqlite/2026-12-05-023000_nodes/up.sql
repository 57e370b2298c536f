-- Several nodes on one database (issue 20). Each running `keyhold serve` process (an
-- instance: node name, process id and start time) records a heartbeat here about every
-- second; that write is also its readiness probe. A reservation records the instance that
-- made it, so that a live node can close the reservations of an instance whose heartbeat
-- has stopped, without waiting for anyone's restart. Times are unix microseconds.
CREATE TABLE nodes (
    instance TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
ALTER TABLE certificates ADD COLUMN reserved_by TEXT;
