//! Account key rollover (RFC 8555 7.3.5): the outer JWS is signed by the account's current
//! key, and its payload is an inner JWS signed by the new key.
//!
//! Invariant: a rollover is accepted only when the inner JWS verifies under the new key it
//! carries, names the same `url` as the outer one, names this account, and names the
//! account's current key as `oldKey`; whether another account already holds the new key is
//! storage's to answer (409 with that account's URL).

use serde_json::Value;

use super::jwk::Jwk;
use super::jws::{Jws, JwsKey, KeyRule};
use super::{AcmeProblem, ProblemKind};

/// Checks a keyChange whose outer JWS (already verified with `current_key`, the key of the
/// account at `account_url`) carried `outer_payload`, and returns the new key. Fails with
/// `malformed` for an inner JWS without `jwk`, with another `url`, or with a payload that is
/// not `{account, oldKey}`; `unauthorized` when the inner signature does not verify or the
/// payload names another account or another old key; `badPublicKey` when the new key is the
/// current one.
pub fn check_key_change(
    outer: &Jws,
    outer_payload: &Value,
    account_url: &str,
    current_key: &Jwk,
) -> Result<Jwk, AcmeProblem> {
    let inner = Jws::from_json(outer_payload)?;
    inner.check_key_rule(KeyRule::Jwk)?;
    if inner.url != outer.url {
        return Err(AcmeProblem::malformed(
            "inner JWS url differs from the outer JWS url",
        ));
    }
    let JwsKey::Jwk(new_key) = &inner.key else {
        return Err(AcmeProblem::malformed("inner JWS needs \"jwk\""));
    };
    let payload = inner
        .verify(new_key)?
        .ok_or_else(|| AcmeProblem::malformed("inner JWS payload is empty"))?;
    let account = payload.get("account").and_then(Value::as_str);
    let old_key = payload.get("oldKey").map(Jwk::from_json).transpose()?;
    let (Some(account), Some(old_key)) = (account, old_key) else {
        return Err(AcmeProblem::malformed(
            "inner JWS payload needs \"account\" and \"oldKey\"",
        ));
    };
    if account != account_url {
        return Err(AcmeProblem::new(
            ProblemKind::Unauthorized,
            "inner JWS names another account",
        ));
    }
    if old_key != *current_key {
        return Err(AcmeProblem::new(
            ProblemKind::Unauthorized,
            "oldKey is not the account's current key",
        ));
    }
    if *new_key == *current_key {
        return Err(AcmeProblem::new(
            ProblemKind::BadPublicKey,
            "the new key is the account's current key",
        ));
    }
    Ok(new_key.clone())
}
