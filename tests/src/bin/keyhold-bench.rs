//! `keyhold-bench`: how many ECDSA signatures per second Keyhold's key stores make, next to
//! the raw implementations they are built on.
//!
//! Run it with `tests/bench/sign [--seconds N] [--runs N] [--json FILE] [--only LIST]`: the
//! script sets up a throwaway SoftHSM2 token directory (`SOFTHSM2_CONF`), runs this binary in
//! release mode and removes the directory afterwards.
//!
//! For P-384 (ECDSA with SHA-384) and P-256 (ECDSA with SHA-256), with 1 and 2 threads, it
//! measures:
//!
//! - `embedded`: Keyhold's embedded token ([`EmbeddedKeyStore`]), `Signer::sign`;
//! - `aws-lc-rs (raw)`: `aws_lc_rs::signature::EcdsaKeyPair::sign`, what the embedded token
//!   is built on, and its reference;
//! - `p384 crate (raw)` / `p256 crate (raw)`: RustCrypto, for comparison;
//! - `pkcs11 (SoftHSM2)`: Keyhold's PKCS#11 key store ([`Pkcs11KeyStore`]) on a fresh
//!   SoftHSM2 token, `Signer::sign`;
//! - `softhsm2 C_Sign (raw)`: cryptoki directly on the same token and key, one session per
//!   thread, hashing on the host and signing the digest with CKM_ECDSA: the reference for
//!   the PKCS#11 store.
//!
//! Every signer signs the same fixed 512-byte message (about the size of a TBS certificate).
//! Each cell (curve, backend, thread count) starts its threads together, warms up for 0.3 s,
//! then counts signatures for `--seconds` (default 2); the rate is the sum over threads of
//! signatures / elapsed. Each cell runs `--runs` times (default 3), rounds interleaved so
//! that drift in the machine's speed hits every backend alike, and the table shows the
//! median. The last signature of every thread in every run is verified (with
//! [`ca_core::keystore::verify`] for Keyhold's backends), so a broken backend cannot post a
//! number.
//!
//! A cell's median still moves by 10-20% between runs on a shared VM (SoftHSM2 alone
//! varies that much), more than the 10% the Keyhold backends are held to. So a paired check
//! follows the table: each Keyhold backend and its reference take turns in 10 ms slices on
//! the same threads, and Keyhold's rate is reported as a share of the reference's; both
//! sides see the same machine, so that ratio is steady to a percent or two.
//!
//! The machine may not be quiet: for every run it also records the share of CPU time the
//! hypervisor stole (`/proc/stat` steal) and other processes used, and lists the disturbed
//! runs (over 5%) under the table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1,
    ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
    VerificationAlgorithm,
};
use ca_core::keystore::embedded::{EmbeddedKeyStore, KdfParams};
use ca_core::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, init_token, module_context};
use ca_core::keystore::{KeyRef, KeySpec, KeyStore, Signer};
use ca_core::secret::Secret;
use ca_e2e::report::{cpu_model, json_string, load_average, median, thousands};
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256, Sha384};

/// Length of the message every backend signs.
const MESSAGE_LEN: usize = 512;
/// Signing before the timed window of each cell.
const WARM_UP: Duration = Duration::from_millis(300);
/// Thread counts measured for every backend.
const THREADS: [usize; 2] = [1, 2];
/// Where Debian's softhsm2 package installs the module.
const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Passphrase of the throwaway embedded token (at least 12 characters).
const EMBEDDED_PASSPHRASE: &str = "keyhold-bench-passphrase";
const SO_PIN: &str = "bench-so-pin";
const USER_PIN: &str = "bench-user-pin";

const USAGE: &str = "\
usage: keyhold-bench [--seconds N] [--runs N] [--json FILE] [--only LIST] [--module PATH]

Measures ECDSA P-384 and P-256 signatures per second with 1 and 2 threads, then checks
each Keyhold backend against its raw reference with both taking turns on the same threads.
Run it through tests/bench/sign, which provides a throwaway SoftHSM2 token directory.

  --seconds N    timed window of each cell, in seconds (default 2)
  --runs N       runs per cell; the table shows the median (default 3)
  --json FILE    also write the results as JSON to FILE
  --only LIST    comma-separated backends: embedded, aws-lc-rs, rustcrypto, pkcs11, c-sign
  --module PATH  PKCS#11 module (default /usr/lib/softhsm/libsofthsm2.so)";

/// A curve, with the hash Keyhold pairs it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Curve {
    P384,
    P256,
}

impl Curve {
    const ALL: [Curve; 2] = [Curve::P384, Curve::P256];

    fn name(self) -> &'static str {
        match self {
            Curve::P384 => "P-384",
            Curve::P256 => "P-256",
        }
    }

    fn spec(self) -> KeySpec {
        match self {
            Curve::P384 => KeySpec::EcP384,
            Curve::P256 => KeySpec::EcP256,
        }
    }

    /// aws-lc-rs's verifier for DER signatures on this curve.
    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Curve::P384 => &ECDSA_P384_SHA384_ASN1,
            Curve::P256 => &ECDSA_P256_SHA256_ASN1,
        }
    }

    /// The digest CKM_ECDSA signs for this curve (RFC 5758 3.2).
    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Curve::P384 => Sha384::digest(message).to_vec(),
            Curve::P256 => Sha256::digest(message).to_vec(),
        }
    }

    /// A raw `r || s` signature (what CKM_ECDSA returns) as a DER Ecdsa-Sig-Value.
    fn raw_to_der(self, raw: &[u8]) -> Result<Vec<u8>> {
        Ok(match self {
            Curve::P384 => p384::ecdsa::Signature::from_slice(raw)
                .context("C_Sign returned a malformed P-384 signature")?
                .to_der()
                .to_bytes()
                .to_vec(),
            Curve::P256 => p256::ecdsa::Signature::from_slice(raw)
                .context("C_Sign returned a malformed P-256 signature")?
                .to_der()
                .to_bytes()
                .to_vec(),
        })
    }
}

/// What signs, in the order of the table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Backend {
    Embedded,
    AwsLc,
    RustCrypto,
    Pkcs11,
    CSign,
}

impl Backend {
    const ALL: [Backend; 5] = [
        Backend::Embedded,
        Backend::AwsLc,
        Backend::RustCrypto,
        Backend::Pkcs11,
        Backend::CSign,
    ];

    /// The name for `--only` and the JSON output.
    fn id(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::AwsLc => "aws-lc-rs",
            Backend::RustCrypto => "rustcrypto",
            Backend::Pkcs11 => "pkcs11",
            Backend::CSign => "c-sign",
        }
    }

    /// The name in the table.
    fn label(self, curve: Curve) -> &'static str {
        match (self, curve) {
            (Backend::Embedded, _) => "embedded",
            (Backend::AwsLc, _) => "aws-lc-rs (raw)",
            (Backend::RustCrypto, Curve::P384) => "p384 crate (raw)",
            (Backend::RustCrypto, Curve::P256) => "p256 crate (raw)",
            (Backend::Pkcs11, _) => "pkcs11 (SoftHSM2)",
            (Backend::CSign, _) => "softhsm2 C_Sign (raw)",
        }
    }

    /// The raw implementation a Keyhold backend is compared with.
    fn reference(self) -> Option<Backend> {
        match self {
            Backend::Embedded => Some(Backend::AwsLc),
            Backend::Pkcs11 => Some(Backend::CSign),
            _ => None,
        }
    }

    fn uses_softhsm(self) -> bool {
        matches!(self, Backend::Pkcs11 | Backend::CSign)
    }

    fn from_id(id: &str) -> Result<Self> {
        Backend::ALL
            .into_iter()
            .find(|b| b.id() == id)
            .ok_or_else(|| {
                anyhow!(
                    "unknown backend {id:?} for --only (known: embedded, aws-lc-rs, rustcrypto, \
                     pkcs11, c-sign)"
                )
            })
    }
}

/// The command line.
#[derive(Debug)]
struct Options {
    seconds: f64,
    runs: usize,
    json: Option<PathBuf>,
    only: Vec<Backend>,
    module: PathBuf,
}

impl Options {
    /// Parses `--flag value` and `--flag=value`; `None` means `--help` was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>> {
        let mut options = Options {
            seconds: 2.0,
            runs: 3,
            json: None,
            only: Backend::ALL.to_vec(),
            module: PathBuf::from(DEFAULT_MODULE),
        };
        let mut only: Vec<Backend> = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| anyhow!("{flag} needs a value\n\n{USAGE}"))
            };
            match flag.as_str() {
                "--seconds" => {
                    let v = value()?;
                    options.seconds = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| *s > 0.0 && *s <= 600.0)
                        .ok_or_else(|| anyhow!("--seconds {v:?}: give a number in (0, 600]"))?;
                }
                "--runs" => {
                    let v = value()?;
                    options.runs = v
                        .parse()
                        .ok()
                        .filter(|r: &usize| (1..=100).contains(r))
                        .ok_or_else(|| anyhow!("--runs {v:?}: give a whole number in 1..=100"))?;
                }
                "--json" => options.json = Some(PathBuf::from(value()?)),
                "--only" => {
                    for id in value()?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let backend = Backend::from_id(id)?;
                        if !only.contains(&backend) {
                            only.push(backend);
                        }
                    }
                }
                "--module" => options.module = PathBuf::from(value()?),
                _ => bail!("unknown argument {arg:?}\n\n{USAGE}"),
            }
        }
        if !only.is_empty() {
            options.only = Backend::ALL
                .into_iter()
                .filter(|b| only.contains(b))
                .collect();
        }
        Ok(Some(options))
    }
}

/// Signs the benchmark message once and returns the signature (DER, or raw `r || s` for
/// C_Sign).
type SignFn<'a> = Box<dyn FnMut() -> Result<Vec<u8>> + 'a>;

/// One signer under test.
trait Subject: Sync {
    /// A signing closure for one thread, with whatever per-thread state it needs (for C_Sign,
    /// its own session).
    fn worker(&self) -> Result<SignFn<'_>>;

    /// Checks a signature the worker produced over the benchmark message.
    fn verify(&self, signature: &[u8]) -> Result<()>;
}

/// A Keyhold [`Signer`] (embedded or PKCS#11), called exactly as the CA calls it.
struct KeyholdSubject {
    signer: Arc<dyn Signer>,
    message: Arc<[u8]>,
}

impl Subject for KeyholdSubject {
    fn worker(&self) -> Result<SignFn<'_>> {
        Ok(Box::new(|| Ok(self.signer.sign(&self.message)?)))
    }

    fn verify(&self, signature: &[u8]) -> Result<()> {
        ca_core::keystore::verify(
            self.signer.algorithm(),
            self.signer.public_key(),
            &self.message,
            signature,
        )
        .context("keyhold signature does not verify")
    }
}

/// aws-lc-rs's `EcdsaKeyPair`, called directly.
struct AwsLcSubject {
    curve: Curve,
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
    message: Arc<[u8]>,
}

impl AwsLcSubject {
    fn new(curve: Curve, message: Arc<[u8]>) -> Result<Self> {
        let alg = match curve {
            Curve::P384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
            Curve::P256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .map_err(|_| anyhow!("aws-lc-rs: key generation failed"))?;
        let key_pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref())
            .map_err(|_| anyhow!("aws-lc-rs: cannot load the generated key"))?;
        Ok(AwsLcSubject {
            curve,
            key_pair,
            rng,
            message,
        })
    }
}

impl Subject for AwsLcSubject {
    fn worker(&self) -> Result<SignFn<'_>> {
        Ok(Box::new(|| {
            let signature = self
                .key_pair
                .sign(&self.rng, &self.message)
                .map_err(|_| anyhow!("aws-lc-rs: signing failed"))?;
            Ok(signature.as_ref().to_vec())
        }))
    }

    fn verify(&self, signature: &[u8]) -> Result<()> {
        UnparsedPublicKey::new(
            self.curve.verification(),
            self.key_pair.public_key().as_ref(),
        )
        .verify(&self.message, signature)
        .map_err(|_| anyhow!("aws-lc-rs signature does not verify"))
    }
}

/// RustCrypto's `p384` / `p256` signing keys (RFC 6979 deterministic ECDSA), DER output.
enum RustCryptoKey {
    P384(p384::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

struct RustCryptoSubject {
    curve: Curve,
    key: RustCryptoKey,
    /// The uncompressed public point, for verification with aws-lc-rs.
    point: Vec<u8>,
    message: Arc<[u8]>,
}

impl RustCryptoSubject {
    /// A key from random bytes (retrying on the negligible chance they are not a scalar).
    fn new(curve: Curve, message: Arc<[u8]>) -> Result<Self> {
        for _ in 0..8 {
            let mut bytes = [0u8; 48];
            let bytes = match curve {
                Curve::P384 => &mut bytes[..],
                Curve::P256 => &mut bytes[..32],
            };
            aws_lc_rs::rand::fill(bytes).map_err(|_| anyhow!("the system rng failed"))?;
            let made = match curve {
                Curve::P384 => p384::ecdsa::SigningKey::from_slice(bytes).ok().map(|k| {
                    let point = k.verifying_key().to_sec1_point(false).as_bytes().to_vec();
                    (RustCryptoKey::P384(k), point)
                }),
                Curve::P256 => p256::ecdsa::SigningKey::from_slice(bytes).ok().map(|k| {
                    let point = k.verifying_key().to_sec1_point(false).as_bytes().to_vec();
                    (RustCryptoKey::P256(k), point)
                }),
            };
            if let Some((key, point)) = made {
                return Ok(RustCryptoSubject {
                    curve,
                    key,
                    point,
                    message,
                });
            }
        }
        bail!("could not make a {} key from random bytes", curve.name())
    }
}

impl Subject for RustCryptoSubject {
    fn worker(&self) -> Result<SignFn<'_>> {
        use p384::ecdsa::signature::Signer as _;
        Ok(Box::new(|| {
            Ok(match &self.key {
                RustCryptoKey::P384(key) => {
                    let signature: p384::ecdsa::DerSignature = key.try_sign(&self.message)?;
                    signature.to_bytes().to_vec()
                }
                RustCryptoKey::P256(key) => {
                    let signature: p256::ecdsa::DerSignature = key.try_sign(&self.message)?;
                    signature.to_bytes().to_vec()
                }
            })
        }))
    }

    fn verify(&self, signature: &[u8]) -> Result<()> {
        UnparsedPublicKey::new(self.curve.verification(), &self.point)
            .verify(&self.message, signature)
            .map_err(|_| anyhow!("{} crate signature does not verify", self.curve.name()))
    }
}

/// cryptoki directly on the token and key Keyhold's PKCS#11 store generated: one session per
/// thread, digest on the host, `C_Sign` with CKM_ECDSA. No DER conversion in the loop.
struct CSignSubject {
    curve: Curve,
    ctx: Pkcs11,
    slot: Slot,
    key_label: String,
    /// Keyhold's signer for the same key: its public key checks C_Sign's signatures.
    keyhold: Arc<dyn Signer>,
    message: Arc<[u8]>,
}

impl Subject for CSignSubject {
    fn worker(&self) -> Result<SignFn<'_>> {
        let session = self
            .ctx
            .open_ro_session(self.slot)
            .context("C_OpenSession")?;
        // Login is per application: Keyhold's store is logged in, so this session is too.
        match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(e).context("C_Login"),
        }
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(self.key_label.as_bytes().to_vec()),
            ])
            .context("C_FindObjects")?;
        let [key] = found.as_slice() else {
            bail!(
                "expected one private key labelled {:?}, found {}",
                self.key_label,
                found.len()
            );
        };
        let key = *key;
        let curve = self.curve;
        Ok(Box::new(move || {
            let digest = curve.digest(&self.message);
            Ok(session.sign(&Mechanism::Ecdsa, key, &digest)?)
        }))
    }

    fn verify(&self, signature: &[u8]) -> Result<()> {
        ca_core::keystore::verify(
            self.keyhold.algorithm(),
            self.keyhold.public_key(),
            &self.message,
            &self.curve.raw_to_der(signature)?,
        )
        .context("C_Sign signature does not verify")
    }
}

/// The slot holding the token labelled `label`.
fn slot_by_label(ctx: &Pkcs11, label: &str) -> Result<Slot> {
    for slot in ctx.get_slots_with_token().context("C_GetSlotList")? {
        let info = ctx.get_token_info(slot).context("C_GetTokenInfo")?;
        if info.token_initialized() && info.label() == label {
            return Ok(slot);
        }
    }
    bail!("no token labelled {label:?}")
}

/// Everything the benchmark signs with, and the stores and directory that must outlive them.
/// Fields drop in order: signers first, the embedded token's directory last.
struct Setup {
    subjects: Vec<(Curve, Backend, Box<dyn Subject>)>,
    _pkcs11: Option<Pkcs11KeyStore>,
    _embedded: Option<EmbeddedKeyStore>,
    _embedded_dir: Option<tempfile::TempDir>,
    /// The PKCS#11 module's own description, for the header.
    module_info: Option<String>,
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
    fn pairs(&self) -> Vec<(Curve, Backend, &dyn Subject, &dyn Subject)> {
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

    fn new(options: &Options, message: &Arc<[u8]>) -> Result<Self> {
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

/// CPU time of the whole machine and of this process, in clock ticks (USER_HZ), from
/// `/proc/stat` and `/proc/self/stat`.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    /// Ticks spent on anything but idle and I/O wait, all CPUs (including this process).
    busy: u64,
    /// Ticks the hypervisor gave to someone else while this VM wanted to run.
    steal: u64,
    /// All ticks, all CPUs.
    total: u64,
    /// User and system ticks of this process.
    own: u64,
}

impl CpuTimes {
    /// `None` where `/proc` is missing or unreadable: the disturbance figures are then
    /// unknown, the measurement itself is unaffected.
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .find(|l| l.starts_with("cpu "))?
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal [guest guest_nice, inside user/nice]
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after_comm = own_stat.rsplit_once(')')?.1;
        let own_fields: Vec<&str> = after_comm.split_whitespace().collect();
        let own =
            own_fields.get(11)?.parse::<u64>().ok()? + own_fields.get(12)?.parse::<u64>().ok()?;
        Some(CpuTimes {
            busy: field(0) + field(1) + field(2) + field(5) + field(6),
            steal: field(7),
            total: (0..8).map(field).sum(),
            own,
        })
    }
}

/// How much of the machine something else took during a timed window.
#[derive(Debug, Clone, Copy, Default)]
struct Disturbance {
    /// Share of the machine's CPU time the hypervisor stole.
    steal: Option<f64>,
    /// Share of the machine's CPU time used by other processes.
    others: Option<f64>,
}

impl Disturbance {
    fn between(before: Option<CpuTimes>, after: Option<CpuTimes>) -> Self {
        let share = |part: fn(&CpuTimes, &CpuTimes) -> u64| {
            let (before, after) = before.zip(after)?;
            let total = after.total.saturating_sub(before.total);
            (total > 0).then(|| part(&before, &after) as f64 / total as f64)
        };
        Disturbance {
            steal: share(|b, a| a.steal.saturating_sub(b.steal)),
            others: share(|b, a| {
                a.busy
                    .saturating_sub(b.busy)
                    .saturating_sub(a.own.saturating_sub(b.own))
            }),
        }
    }

    /// Whether something else likely dragged the numbers down (over 5% of the machine's CPU
    /// time stolen or used by others).
    fn disturbed(&self) -> bool {
        self.steal.unwrap_or(0.0) > 0.05 || self.others.unwrap_or(0.0) > 0.05
    }

    fn describe(&self) -> String {
        let pct = |v: Option<f64>| v.map_or_else(|| "?".into(), |v| format!("{:.0}%", v * 100.0));
        format!(
            "steal {}, other processes {}",
            pct(self.steal),
            pct(self.others)
        )
    }
}

/// What one thread does in a measurement. It is made on its own thread (a PKCS#11 session
/// is not `Sync`), so it need not be `Send`; only its output crosses threads.
trait Job {
    type Output: Send;

    /// One unit of warm-up work.
    fn warm_up(&mut self) -> Result<()>;

    /// The timed work, until `stop` is set.
    fn run(&mut self, stop: &AtomicBool) -> Result<Self::Output>;
}

/// Runs `threads` jobs made by `make` side by side and returns their outputs.
///
/// All threads make their jobs, pass a barrier together and warm up until the main thread
/// ends the warm-up ([`WARM_UP`]); they pass a second barrier together, then run until the
/// main thread stops them after `duration`. Every thread reaches both barriers even if it
/// fails, so a failure ends the measurement instead of hanging it.
fn run_threads<J: Job>(
    threads: usize,
    duration: Duration,
    make: &(dyn Fn() -> Result<J> + Sync),
) -> Result<(Vec<J::Output>, Disturbance)> {
    let ready = Barrier::new(threads + 1);
    let go = Barrier::new(threads + 1);
    let warm = AtomicBool::new(false);
    let stop = AtomicBool::new(false);

    let (results, disturbance) = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let job = make();
                    ready.wait();
                    let warmed = job.and_then(|mut job| {
                        while !warm.load(Ordering::Acquire) {
                            job.warm_up()?;
                        }
                        Ok(job)
                    });
                    go.wait();
                    warmed?.run(&stop)
                })
            })
            .collect();
        ready.wait();
        thread::sleep(WARM_UP);
        warm.store(true, Ordering::Release);
        go.wait();
        let before = CpuTimes::now();
        thread::sleep(duration);
        stop.store(true, Ordering::Release);
        let after = CpuTimes::now();
        let results: Vec<Result<J::Output>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow!("a benchmark thread panicked"))?
            })
            .collect();
        (results, Disturbance::between(before, after))
    });
    Ok((results.into_iter().collect::<Result<_>>()?, disturbance))
}

/// One subject signing as fast as it can.
struct SoloJob<'a> {
    sign: SignFn<'a>,
    last: Vec<u8>,
}

/// A [`SoloJob`]'s result: signatures in the timed window, the time they took, and the last
/// signature, for verification.
struct SoloResult {
    count: u64,
    elapsed: Duration,
    last: Vec<u8>,
}

impl Job for SoloJob<'_> {
    type Output = SoloResult;

    fn warm_up(&mut self) -> Result<()> {
        self.last = (self.sign)()?;
        Ok(())
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<SoloResult> {
        let start = Instant::now();
        let mut count = 0u64;
        while !stop.load(Ordering::Acquire) {
            self.last = (self.sign)()?;
            count += 1;
        }
        Ok(SoloResult {
            count,
            elapsed: start.elapsed(),
            last: std::mem::take(&mut self.last),
        })
    }
}

/// One run of one cell.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Signatures per second, all threads together.
    rate: f64,
    disturbance: Disturbance,
}

/// Signatures per second of `subject` with `threads` threads (the sum over threads of
/// signatures / elapsed), and how disturbed the machine was meanwhile. Verifies each thread's
/// last signature.
fn measure(subject: &dyn Subject, threads: usize, duration: Duration) -> Result<Sample> {
    let make = || {
        Ok(SoloJob {
            sign: subject.worker()?,
            last: Vec::new(),
        })
    };
    let (results, disturbance) = run_threads(threads, duration, &make)?;
    let mut rate = 0.0;
    for result in results {
        ensure!(result.count > 0, "a thread made no signature in the window");
        subject
            .verify(&result.last)
            .context("verifying a sample signature")?;
        rate += result.count as f64 / result.elapsed.as_secs_f64();
    }
    Ok(Sample { rate, disturbance })
}

/// How long each side of a [`PairedJob`] signs before handing over to the other.
const SLICE: Duration = Duration::from_millis(10);

/// A Keyhold backend and its reference taking turns on one thread, in slices of [`SLICE`].
///
/// Both sides see the same moment-to-moment machine (clock speed, neighbours, SoftHSM2's
/// own jitter), so the ratio of their rates is far steadier than the ratio of two medians
/// measured seconds apart.
struct PairedJob<'a> {
    keyhold: SignFn<'a>,
    reference: SignFn<'a>,
    last: [Vec<u8>; 2],
}

/// A [`PairedJob`]'s result: per side, signatures and the time they took, and the last
/// signature.
struct PairedResult {
    count: [u64; 2],
    elapsed: [Duration; 2],
    last: [Vec<u8>; 2],
}

impl Job for PairedJob<'_> {
    type Output = PairedResult;

    fn warm_up(&mut self) -> Result<()> {
        self.last = [(self.keyhold)()?, (self.reference)()?];
        Ok(())
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<PairedResult> {
        let mut count = [0u64; 2];
        let mut elapsed = [Duration::ZERO; 2];
        while !stop.load(Ordering::Acquire) {
            for (side, sign) in [&mut self.keyhold, &mut self.reference]
                .into_iter()
                .enumerate()
            {
                let start = Instant::now();
                loop {
                    self.last[side] = sign()?;
                    count[side] += 1;
                    if start.elapsed() >= SLICE {
                        break;
                    }
                }
                elapsed[side] += start.elapsed();
            }
        }
        Ok(PairedResult {
            count,
            elapsed,
            last: std::mem::take(&mut self.last),
        })
    }
}

/// One run of a paired comparison.
#[derive(Debug, Clone, Copy)]
struct PairedSample {
    /// The Keyhold backend's rate over its reference's, from the same threads.
    ratio: f64,
    disturbance: Disturbance,
}

/// The rate of `keyhold` relative to `reference`, both signing on the same `threads`
/// threads in alternating slices. Verifies the last signature of each side on each thread.
fn measure_paired(
    keyhold: &dyn Subject,
    reference: &dyn Subject,
    threads: usize,
    duration: Duration,
) -> Result<PairedSample> {
    let make = || {
        Ok(PairedJob {
            keyhold: keyhold.worker()?,
            reference: reference.worker()?,
            last: [Vec::new(), Vec::new()],
        })
    };
    let (results, disturbance) = run_threads(threads, duration, &make)?;
    let mut rates = [0.0f64; 2];
    for result in results {
        for (side, subject) in [keyhold, reference].into_iter().enumerate() {
            ensure!(
                result.count[side] > 0,
                "a thread made no signature in the window"
            );
            subject
                .verify(&result.last[side])
                .context("verifying a sample signature")?;
            rates[side] += result.count[side] as f64 / result.elapsed[side].as_secs_f64();
        }
    }
    Ok(PairedSample {
        ratio: rates[0] / rates[1],
        disturbance,
    })
}

/// The runs of one (curve, backend, threads) cell.
struct Cell {
    curve: Curve,
    backend: Backend,
    threads: usize,
    runs: Vec<Sample>,
}

impl Cell {
    fn median(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.rate).collect::<Vec<_>>())
    }
}

/// The runs of one paired comparison: a Keyhold backend against its reference.
struct PairCell {
    curve: Curve,
    /// The Keyhold backend; its reference is [`Backend::reference`].
    backend: Backend,
    threads: usize,
    runs: Vec<PairedSample>,
}

impl PairCell {
    fn median(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.ratio).collect::<Vec<_>>())
    }
}

/// Everything measured.
struct Results {
    cells: Vec<Cell>,
    pairs: Vec<PairCell>,
}

impl Results {
    fn median(&self, curve: Curve, backend: Backend, threads: usize) -> Option<f64> {
        self.cells
            .iter()
            .find(|c| c.curve == curve && c.backend == backend && c.threads == threads)
            .map(Cell::median)
    }

    /// `backend`'s median as a fraction of its reference's, if both were measured.
    fn vs_reference(&self, curve: Curve, backend: Backend, threads: usize) -> Option<f64> {
        let reference = backend.reference()?;
        Some(self.median(curve, backend, threads)? / self.median(curve, reference, threads)?)
    }
}

fn table(results: &Results, only: &[Backend]) -> String {
    let mut out = format!(
        "{:<6} {:<26} {:>10} {:>11} {:>7}   {}\n",
        "curve", "backend", "1 thread", "2 threads", "2t/1t", "vs reference (1t / 2t)"
    );
    for curve in Curve::ALL {
        for &backend in only {
            let one = results.median(curve, backend, 1);
            let two = results.median(curve, backend, 2);
            let show = |v: Option<f64>| v.map_or_else(|| "-".into(), thousands);
            let scaling = match (one, two) {
                (Some(a), Some(b)) => format!("{:.2}x", b / a),
                _ => "-".into(),
            };
            let versus = match (
                backend.reference(),
                results.vs_reference(curve, backend, 1),
                results.vs_reference(curve, backend, 2),
            ) {
                (Some(reference), Some(a), Some(b)) => format!(
                    "{:.0}% / {:.0}% of {}",
                    a * 100.0,
                    b * 100.0,
                    reference.label(curve)
                ),
                _ => String::new(),
            };
            let line = format!(
                "{:<6} {:<26} {:>10} {:>11} {:>7}   {}",
                curve.name(),
                backend.label(curve),
                show(one),
                show(two),
                scaling,
                versus
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// The paired comparisons: each Keyhold backend's rate as a share of its reference's.
fn paired_table(results: &Results) -> String {
    if results.pairs.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "paired check (\"vs reference\" above divides medians measured seconds apart; here \
         each Keyhold backend and its\nreference take turns in {} ms slices on the same \
         threads): Keyhold's rate as a share of the reference's,\nmedian (min-max) of the \
         runs:\n",
        SLICE.as_millis()
    );
    let mut seen = Vec::new();
    for pair in &results.pairs {
        if seen.contains(&(pair.curve, pair.backend)) {
            continue;
        }
        seen.push((pair.curve, pair.backend));
        let Some(reference) = pair.backend.reference() else {
            continue;
        };
        let mut line = format!(
            "{:<6} {:<43}",
            pair.curve.name(),
            format!(
                "{} / {}",
                pair.backend.label(pair.curve),
                reference.label(pair.curve)
            )
        );
        for threads in THREADS {
            let Some(cell) = results.pairs.iter().find(|c| {
                c.curve == pair.curve && c.backend == pair.backend && c.threads == threads
            }) else {
                continue;
            };
            let ratios = cell.runs.iter().map(|r| r.ratio * 100.0);
            let min = ratios.clone().fold(f64::INFINITY, f64::min);
            let max = ratios.fold(f64::NEG_INFINITY, f64::max);
            let _ = write!(
                line,
                "  {threads}t {:>6.1}% {:<13}",
                cell.median() * 100.0,
                format!("({min:.1}-{max:.1})")
            );
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The runs that something else on the machine disturbed, so a reader can judge the medians.
fn noise_report(results: &Results) -> String {
    let runs = results.cells.iter().map(|c| c.runs.len()).sum::<usize>()
        + results.pairs.iter().map(|c| c.runs.len()).sum::<usize>();
    let mut disturbed = String::new();
    let mut count = 0;
    for cell in &results.cells {
        for (i, sample) in cell.runs.iter().enumerate() {
            if sample.disturbance.disturbed() {
                count += 1;
                let _ = writeln!(
                    disturbed,
                    "  {} {} {}t run {}: {}/s ({}; median {}/s)",
                    cell.curve.name(),
                    cell.backend.label(cell.curve),
                    cell.threads,
                    i + 1,
                    thousands(sample.rate),
                    sample.disturbance.describe(),
                    thousands(cell.median())
                );
            }
        }
    }
    for pair in &results.pairs {
        for (i, sample) in pair.runs.iter().enumerate() {
            if sample.disturbance.disturbed() {
                count += 1;
                let _ = writeln!(
                    disturbed,
                    "  {} {} paired {}t run {}: {:.1}% ({}; median {:.1}%)",
                    pair.curve.name(),
                    pair.backend.label(pair.curve),
                    pair.threads,
                    i + 1,
                    sample.ratio * 100.0,
                    sample.disturbance.describe(),
                    pair.median() * 100.0
                );
            }
        }
    }
    if count == 0 {
        format!("no run was disturbed (steal and other processes under 5% in all {runs} runs)\n")
    } else {
        format!(
            "{count} of {runs} runs shared the machine (over 5% of its CPU time stolen by the \
             hypervisor or used by other processes); their numbers may be low:\n{disturbed}"
        )
    }
}

/// A JSON list of one disturbance figure per run.
fn json_shares(runs: &[Disturbance], figure: fn(&Disturbance) -> Option<f64>) -> String {
    runs.iter()
        .map(|d| figure(d).map_or_else(|| "null".into(), |v| format!("{v:.3}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON number, or `null` for what JSON cannot hold.
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1}")
    } else {
        "null".into()
    }
}

fn to_json(results: &Results, machine: &Machine, options: &Options) -> String {
    let mut cells = Vec::new();
    for cell in &results.cells {
        let runs: Vec<String> = cell.runs.iter().map(|r| json_number(r.rate)).collect();
        let disturbances: Vec<Disturbance> = cell.runs.iter().map(|r| r.disturbance).collect();
        let reference = match (
            cell.backend.reference(),
            results.vs_reference(cell.curve, cell.backend, cell.threads),
        ) {
            (Some(r), Some(ratio)) => format!(
                ", \"reference\": {}, \"ratio_to_reference\": {:.3}",
                json_string(r.id()),
                ratio
            ),
            _ => String::new(),
        };
        cells.push(format!(
            "    {{\"curve\": {}, \"backend\": {}, \"label\": {}, \"threads\": {}, \
             \"ops_per_sec\": {}, \"runs\": [{}], \"steal_share\": [{}], \
             \"other_processes_share\": [{}]{}}}",
            json_string(cell.curve.name()),
            json_string(cell.backend.id()),
            json_string(cell.backend.label(cell.curve)),
            cell.threads,
            json_number(cell.median()),
            runs.join(", "),
            json_shares(&disturbances, |d| d.steal),
            json_shares(&disturbances, |d| d.others),
            reference
        ));
    }
    let mut pairs = Vec::new();
    for pair in &results.pairs {
        let runs: Vec<String> = pair
            .runs
            .iter()
            .map(|r| format!("{:.4}", r.ratio))
            .collect();
        let disturbances: Vec<Disturbance> = pair.runs.iter().map(|r| r.disturbance).collect();
        pairs.push(format!(
            "    {{\"curve\": {}, \"backend\": {}, \"reference\": {}, \"threads\": {}, \
             \"ratio\": {:.4}, \"runs\": [{}], \"steal_share\": [{}], \
             \"other_processes_share\": [{}]}}",
            json_string(pair.curve.name()),
            json_string(pair.backend.id()),
            pair.backend
                .reference()
                .map_or_else(|| "null".into(), |r| json_string(r.id())),
            pair.threads,
            pair.median(),
            runs.join(", "),
            json_shares(&disturbances, |d| d.steal),
            json_shares(&disturbances, |d| d.others),
        ));
    }
    format!(
        "{{\n  \"machine\": {{\"cpu\": {}, \"available_parallelism\": {}, \
         \"loadavg_before\": {}, \"loadavg_after\": {}, \"pkcs11_module\": {}}},\n  \
         \"settings\": {{\"seconds\": {}, \"runs\": {}, \"warm_up_seconds\": {}, \
         \"message_bytes\": {}, \"paired_slice_ms\": {}}},\n  \"results\": [\n{}\n  ],\n  \
         \"paired\": [\n{}\n  ]\n}}\n",
        json_string(&machine.cpu),
        machine.parallelism,
        json_string(&machine.loadavg_before),
        json_string(&machine.loadavg_after),
        machine
            .module
            .as_deref()
            .map_or_else(|| "null".into(), json_string),
        options.seconds,
        options.runs,
        WARM_UP.as_secs_f64(),
        MESSAGE_LEN,
        SLICE.as_millis(),
        cells.join(",\n"),
        pairs.join(",\n")
    )
}

/// What the numbers were measured on.
struct Machine {
    cpu: String,
    parallelism: usize,
    loadavg_before: String,
    loadavg_after: String,
    module: Option<String>,
}

/// The fixed message: deterministic, not all one byte.
fn message() -> Arc<[u8]> {
    (0..MESSAGE_LEN)
        .map(|i| (i.wrapping_mul(31) ^ 0x5a) as u8)
        .collect()
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("keyhold-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let Some(options) = Options::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let mut machine = Machine {
        cpu: cpu_model(),
        parallelism: thread::available_parallelism().map_or(1, |n| n.get()),
        loadavg_before: load_average(),
        loadavg_after: String::new(),
        module: None,
    };
    let message = message();
    let setup = Setup::new(&options, &message)?;
    machine.module = setup.module_info.clone();

    println!("cpu: {}", machine.cpu);
    println!("available parallelism: {}", machine.parallelism);
    println!("load average before the run: {}", machine.loadavg_before);
    if let Some(module) = &machine.module {
        println!("pkcs#11 module: {module}");
    }
    println!(
        "{MESSAGE_LEN}-byte message; per cell {:.1} s warm-up + {} s timed, median of {} run(s)\n",
        WARM_UP.as_secs_f64(),
        options.seconds,
        options.runs
    );

    let duration = Duration::from_secs_f64(options.seconds);
    let mut cells: Vec<Cell> = Vec::new();
    let mut pairs: Vec<PairCell> = Vec::new();
    for run in 1..=options.runs {
        for (curve, backend, subject) in &setup.subjects {
            for threads in THREADS {
                let sample = measure(subject.as_ref(), threads, duration).with_context(|| {
                    format!(
                        "{} {} with {threads} thread(s)",
                        curve.name(),
                        backend.label(*curve)
                    )
                })?;
                eprintln!(
                    "run {run}/{}: {} {:<22} {threads}t {:>9}/s  ({})",
                    options.runs,
                    curve.name(),
                    backend.label(*curve),
                    thousands(sample.rate),
                    sample.disturbance.describe()
                );
                match cells
                    .iter_mut()
                    .find(|c| c.curve == *curve && c.backend == *backend && c.threads == threads)
                {
                    Some(cell) => cell.runs.push(sample),
                    None => cells.push(Cell {
                        curve: *curve,
                        backend: *backend,
                        threads,
                        runs: vec![sample],
                    }),
                }
            }
        }
        for (curve, backend, keyhold, reference) in setup.pairs() {
            for threads in THREADS {
                let sample =
                    measure_paired(keyhold, reference, threads, duration).with_context(|| {
                        format!(
                            "{} {} paired with its reference, {threads} thread(s)",
                            curve.name(),
                            backend.label(curve)
                        )
                    })?;
                eprintln!(
                    "run {run}/{}: {} {:<22} {threads}t {:>8.1}% of {}  ({})",
                    options.runs,
                    curve.name(),
                    backend.label(curve),
                    sample.ratio * 100.0,
                    backend.reference().map_or("?", |r| r.label(curve)),
                    sample.disturbance.describe()
                );
                match pairs
                    .iter_mut()
                    .find(|c| c.curve == curve && c.backend == backend && c.threads == threads)
                {
                    Some(cell) => cell.runs.push(sample),
                    None => pairs.push(PairCell {
                        curve,
                        backend,
                        threads,
                        runs: vec![sample],
                    }),
                }
            }
        }
    }
    machine.loadavg_after = load_average();
    let results = Results { cells, pairs };

    println!("{}", table(&results, &options.only));
    println!("{}", paired_table(&results));
    print!("{}", noise_report(&results));
    println!("load average after the run: {}", machine.loadavg_after);
    if let Some(path) = &options.json {
        std::fs::write(path, to_json(&results, &machine, &options))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("json: {}", path.display());
    }
    Ok(())
}
