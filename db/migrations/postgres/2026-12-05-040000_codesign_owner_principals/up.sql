-- Issue 15, item 3: a code-signing key's owner is a principal, a person ('user': a UI
-- account or a requester the CLI names) or the API token that asked for the key
-- ('token'), never a name any new token could take. Existing owners map to the person of
-- that name: a token named like an owner no longer signs as them; the owner binds it
-- (consents) again if it should.
ALTER TABLE codesign_keys ADD COLUMN owner_kind TEXT NOT NULL DEFAULT 'user'
    CHECK (owner_kind IN ('user', 'token'));
-- Bindings were made by administrators without the owner's consent: they end here, and
-- only the owner can make them again (`keyhold codesign bind --as OWNER`, or the owning
-- token through the API).
DELETE FROM codesign_bindings WHERE bound_by <> (
    SELECT owner FROM codesign_keys WHERE codesign_keys.label = codesign_bindings.label);
