DROP TABLE operation_approvals;
DROP TABLE operations;
