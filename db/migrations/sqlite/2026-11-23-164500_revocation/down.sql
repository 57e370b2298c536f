DROP TABLE crl_numbers;
DROP INDEX certificates_revoked;
DROP TABLE revocations;
