DROP TABLE acme_challenges;
DROP TABLE acme_authzs;
DROP TABLE acme_orders;
DROP TABLE acme_accounts;
DROP TABLE acme_eab_keys;
