//! One fresh key per curve in every backend: the embedded token, SoftHSM2 through Keyhold and directly.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, init_token, module_context};
use ca_core::keystore::{KeyRef, KeyStore};
use ca_core::secret::Secret;

use crate::subjects::{
    AwsLcSubject, CSignSubject, Curve, KeyholdSubject, RustCryptoSubject, Subject, USER_PIN,
    slot_by_label,
};
use crate::{Backend, EMBEDDED_PASSPHRASE, Options, SO_PIN, THREADS};

/// Everything the benchmark signs with, and the stores and directory that must outlive them.
/// Fields drop in order: signers first, the embedded token's directory last.
pub(crate) struct Setup {
    pub(crate) subjects: Vec<(Curve, Backend, Box<dyn Subject>)>,
    _pkcs11: Option<Pkcs11KeyStore>,
    _embedded: Option<EmbeddedKeyStore>,
    _embedded_dir: Option<tempfile::TempDir>,
    /// The PKCS#11 module's own description, for the header.
    pub(crate) module_info: Option<String>,
}

impl Setup {
    /// The subject measured for `backend` on `curve`, if it was selected.
    fn subject(&self, curve: Curve, backend: Backend) -> Option<&dyn Subject> {
        self.subjects
            .iter()
            .find(|(c, b, _)| *c == curve && *b == backend)
            .map(|(_, _, s)| s.as_ref())
    }

    /// Each selected Keyhold backend whose reference is selected too, with both subjects.
    pub(crate) fn pairs(&self) -> Vec<(Curve, Backend, &dyn Subject, &dyn Subject)> {
        let mut pairs = Vec::new();
        for curve in Curve::ALL {
            for backend in Backend::ALL {
                let Some(reference) = backend.reference() else {
                    continue;
                };
                if let (Some(a), Some(b)) =
                    (self.subject(curve, backend), self.subject(curve, reference))
                {
                    pairs.push((curve, backend, a, b));
                }
            }
        }
        pairs
    }

    pub(crate) fn new(options: &Options, message: &Arc<[u8]>) -> Result<Self> {
        let wants = |b: Backend| options.only.contains(&b);
        let mut setup = Setup {
            subjects: Vec::new(),
            _pkcs11: None,
            _embedded: None,
            _embedded_dir: None,
            module_info: None,
        };
        let key_ref = |curve: Curve| KeyRef::new(format!("bench-{}", curve.spec()));

        let mut embedded_signers = HashMap::new();
        if wants(Backend::Embedded) {
            let dir = tempfile::Builder::new()
                .prefix("keyhold-bench-")
                .tempdir()
                .context("creating a temporary directory for the embedded token")?;
            let store = EmbeddedKeyStore::create(
                &dir.path().join("token"),
                &Secret::new(EMBEDDED_PASSPHRASE.into()),
                KdfParams::insecure_for_tests(),
            )
            .context("creating the embedded token")?;
            for curve in Curve::ALL {
                let key = key_ref(curve)?;
                store.generate(&key, curve.spec())?;
                embedded_signers.insert(curve, store.signer(&key)?);
            }
            setup._embedded = Some(store);
            setup._embedded_dir = Some(dir);
        }

        let mut pkcs11_signers = HashMap::new();
        let mut pkcs11_token = None;
        if options.only.iter().any(|b| b.uses_softhsm()) {
            if std::env::var_os("SOFTHSM2_CONF").is_none() {
                bail!(
                    "SOFTHSM2_CONF is not set: run the benchmark through tests/bench/sign, which \
                     creates a throwaway SoftHSM2 token directory (or pass --only embedded,\
                     aws-lc-rs,rustcrypto)"
                );
            }
            let module = &options.module;
            let ctx = module_context(module)?;
            if let Ok(info) = ctx.get_library_info() {
                setup.module_info = Some(format!(
                    "{} {} {} ({})",
                    info.manufacturer_id().trim(),
                    info.library_description().trim(),
                    info.library_version(),
                    module.display()
                ));
            }
            let token = format!("keyhold-bench-{}", std::process::id());
            init_token(
                module,
                &token,
                &Secret::new(SO_PIN.into()),
                &Secret::new(USER_PIN.into()),
            )
            .with_context(|| format!("initialising SoftHSM2 token {token:?}"))?;
            let mut config = Pkcs11Config::new(module.clone(), token.clone());
            config.sessions = THREADS.into_iter().max().unwrap_or(2).max(2);
            let store = Pkcs11KeyStore::open(&config, &Secret::new(USER_PIN.into()))
                .context("opening the pkcs11 key store")?;
            for curve in Curve::ALL {
                let key = key_ref(curve)?;
                store.generate(&key, curve.spec())?;
                pkcs11_signers.insert(curve, (key.label().to_owned(), store.signer(&key)?));
            }
            let slot = slot_by_label(&ctx, &token)?;
            pkcs11_token = Some((ctx, slot));
            setup._pkcs11 = Some(store);
        }

        for curve in Curve::ALL {
            for backend in options.only.iter().copied() {
                let subject: Box<dyn Subject> = match backend {
                    Backend::Embedded => Box::new(KeyholdSubject {
                        signer: Arc::clone(
                            embedded_signers
                                .get(&curve)
                                .context("embedded signer missing")?,
                        ),
                        message: Arc::clone(message),
                    }),
                    Backend::AwsLc => Box::new(AwsLcSubject::new(curve, Arc::clone(message))?),
                    Backend::RustCrypto => {
                        Box::new(RustCryptoSubject::new(curve, Arc::clone(message))?)
                    }
                    Backend::Pkcs11 => Box::new(KeyholdSubject {
                        signer: Arc::clone(
                            &pkcs11_signers
                                .get(&curve)
                                .context("pkcs11 signer missing")?
                                .1,
                        ),
                        message: Arc::clone(message),
                    }),
                    Backend::CSign => {
                        let (label, signer) =
                            pkcs11_signers.get(&curve).context("pkcs11 key missing")?;
                        let (ctx, slot) = pkcs11_token.as_ref().context("token missing")?;
                        Box::new(CSignSubject {
                            curve,
                            ctx: ctx.clone(),
                            slot: *slot,
                            key_label: label.clone(),
                            keyhold: Arc::clone(signer),
                            message: Arc::clone(message),
                        })
                    }
                };
                setup.subjects.push((curve, backend, subject));
            }
        }
        Ok(setup)
    }
}
