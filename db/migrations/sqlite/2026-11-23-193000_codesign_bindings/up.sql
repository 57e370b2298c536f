-- Code signing (issue 7): API tokens an administrator lets sign with a key besides its
-- owner's. A binding names the token, so a revoked or expired token stops signing at once
-- (the sign path checks the token's row, not only the binding). Times: unix microseconds.
CREATE TABLE codesign_bindings (
    label TEXT NOT NULL REFERENCES codesign_keys (label),
    token TEXT NOT NULL REFERENCES api_tokens (name),
    bound_by TEXT NOT NULL,
    bound_at BIGINT NOT NULL,
    PRIMARY KEY (label, token)
);
