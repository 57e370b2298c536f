-- ACME upkeep (issue 17). A challenge in `processing` records the node instance that claimed
-- it (see the `nodes` table), so that a live node can take over the validations of an
-- instance whose heartbeat has stopped. The expiry indexes let the periodic sweep find
-- orders and authorizations long past their expiry without reading the tables whole.
ALTER TABLE acme_challenges ADD COLUMN claimed_by TEXT;
CREATE INDEX acme_orders_by_expiry ON acme_orders (expires_at);
CREATE INDEX acme_authzs_by_expiry ON acme_authzs (expires_at);
