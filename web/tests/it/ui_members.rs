//! The CA page lists each HSM member with its state, last signature, load and last error
//! (issue 18), from the same `KeyStore::members` that `/readyz` and `/metrics` read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, test, web};
use ca_core::keystore::{
    KeyInfo, KeyRef, KeySpec, KeyStore, KeyStoreError, MemberState, MemberStatus, Signer, SpkiDer,
};
use ca_core::users::Role;
use ca_web::http::state::Probes;

use crate::api::Fixture;
use crate::ui::{body, get, login, user};

/// The fixture's key store, reporting two members as a PKCS#11 store with one out would.
#[derive(Debug)]
struct TwoMembers(Arc<dyn KeyStore>);

impl KeyStore for TwoMembers {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }
    fn generate(&self, key: &KeyRef, spec: KeySpec) -> Result<SpkiDer, KeyStoreError> {
        self.0.generate(key, spec)
    }
    fn signer(&self, key: &KeyRef) -> Result<Arc<dyn Signer>, KeyStoreError> {
        self.0.signer(key)
    }
    fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        self.0.list()
    }
    fn destroy(&self, key: &KeyRef) -> Result<(), KeyStoreError> {
        self.0.destroy(key)
    }
    fn uri(&self, key: &KeyRef) -> String {
        self.0.uri(key)
    }
    fn members(&self) -> Vec<MemberStatus> {
        let member = |name: &str, state, error: Option<&str>, latency, in_flight| MemberStatus {
            name: name.into(),
            state,
            last_error: error.map(Into::into),
            last_latency: latency,
            in_flight,
            max_in_flight: 30,
            signatures: 7,
            errors: u64::from(error.is_some()),
            latency_buckets: Vec::new(),
            latency_sum: 0.0,
        };
        vec![
            member(
                "hsm-a",
                MemberState::Out,
                Some("C_Sign: CKR_DEVICE_REMOVED (0x32)"),
                None,
                0,
            ),
            member(
                "hsm-b",
                MemberState::In,
                None,
                Some(Duration::from_micros(1_500)),
                3,
            ),
        ]
    }
}

#[actix_web::test]
async fn the_ca_page_lists_each_hsm_member_with_its_state_and_last_error() {
    let mut fx = Fixture::new();
    user(&fx, "rita", &[Role::Requester]);
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(fx.state.clone()))
            .configure(ca_web::configure),
    )
    .await;
    let (rita, _) = login(&app, "rita").await;
    let html = body(test::call_service(&app, get("/ui/ca", &rita).to_request()).await).await;
    assert!(
        !html.contains("id=\"hsm-members\""),
        "an embedded token has no members to list"
    );

    fx.state.probes = Arc::new(Probes {
        db: fx.state.probes.db.clone(),
        keys: Arc::new(TwoMembers(fx.state.probes.keys.clone())),
        signer: None,
        last_sign: Mutex::new(None),
        last_write: Mutex::new(None),
    });
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(fx.state.clone()))
            .configure(ca_web::configure),
    )
    .await;
    let (rita, _) = login(&app, "rita").await;
    let html = body(test::call_service(&app, get("/ui/ca", &rita).to_request()).await).await;
    let table = html
        .split("id=\"hsm-members\"")
        .nth(1)
        .expect("the members table")
        .split("</section>")
        .next()
        .unwrap();
    assert!(
        table.contains(
            "<tr><td>hsm-a</td><td>out</td><td>-</td><td>0 / 30</td>\
             <td>C_Sign: CKR_DEVICE_REMOVED (0x32)</td></tr>"
        ),
        "{table}"
    );
    assert!(
        table
            .contains("<tr><td>hsm-b</td><td>in</td><td>1.5 ms</td><td>3 / 30</td><td>-</td></tr>"),
        "{table}"
    );
}
