//! ACME nonces: a redeemed nonce is recorded once, for every node on the database.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ca_core::acme::nonce::{NonceKey, NonceLedger, RedeemError, redeem};

use crate::support::*;

on_both_backends!(
    a_nonce_id_is_redeemed_once,
    expired_records_are_swept_and_live_ones_kept,
    two_nodes_racing_for_one_nonce_let_exactly_one_win,
);

fn a_nonce_id_is_redeemed_once(b: &Backend) {
    let expires = t0() + Duration::from_secs(3600);
    assert!(b.db.redeem_nonce(&[1; 24], expires).unwrap());
    assert!(!b.db.redeem_nonce(&[1; 24], expires).unwrap());
    assert!(b.db.redeem_nonce(&[2; 24], expires).unwrap());
}

fn expired_records_are_swept_and_live_ones_kept(b: &Backend) {
    b.db.redeem_nonce(&[1; 24], t0() - Duration::from_secs(1))
        .unwrap();
    b.db.redeem_nonce(&[2; 24], t0() + Duration::from_secs(3600))
        .unwrap();
    assert_eq!(b.db.sweep_nonces(t0()).unwrap(), 1);
    assert!(
        !b.db.redeem_nonce(&[2; 24], t0()).unwrap(),
        "a live record must stay"
    );
    assert!(
        b.db.redeem_nonce(&[1; 24], t0()).unwrap(),
        "the expired record is gone"
    );
}

fn two_nodes_racing_for_one_nonce_let_exactly_one_win(b: &Backend) {
    // Two Db handles on one database stand for two Keyhold nodes behind a load balancer:
    // the nonce is minted by one and replayed against both at once.
    let second = b.reopen();
    let nodes = [&b.db, &second];
    let key = NonceKey::from_secret(&[5; 32]).unwrap();
    let now = std::time::SystemTime::now();
    for round in 0..5 {
        let nonce = key.mint(now).unwrap();
        let (wins, refusals) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for t in 0..8 {
                let (db, key, nonce) = (nodes[t % 2], &key, &nonce);
                let (wins, refusals) = (&wins, &refusals);
                scope.spawn(move || match redeem(key, db, nonce, now) {
                    Ok(()) => wins.fetch_add(1, Ordering::SeqCst),
                    Err(RedeemError::Refused(_)) => refusals.fetch_add(1, Ordering::SeqCst),
                    Err(RedeemError::Store(e)) => panic!("round {round}: {e}"),
                });
            }
        });
        assert_eq!(wins.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(refusals.load(Ordering::SeqCst), 7, "round {round}");
    }
}
