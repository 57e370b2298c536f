DROP TABLE audit_head;
DROP TABLE audit_checkpoints;
DROP TABLE audit_log;
DROP TABLE certificates;
DROP TABLE approvals;
DROP TABLE requests;
DROP TABLE issuers;
