DROP INDEX acme_authzs_by_expiry;
DROP INDEX acme_orders_by_expiry;
ALTER TABLE acme_challenges DROP COLUMN claimed_by;
