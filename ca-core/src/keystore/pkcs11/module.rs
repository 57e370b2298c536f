//! The process-wide state of each loaded PKCS#11 module.
//!
//! Invariant: each module path is loaded once per process, so every key store, signer and
//! test in the process shares one context. It is finalized only by
//! [`Module::reinitialize`], which a key store member calls when the module itself failed
//! (issue 18), once no call through Keyhold is inside it (or, forced, under calls abandoned
//! long ago);
//! every session opened before is then forgotten (see the epoch).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use sha2::{Digest, Sha256};

use super::rv;
use crate::keystore::KeyStoreError;
use crate::secret::Secret;

/// One loaded module and what the process knows about its login state.
#[derive(Debug)]
pub(super) struct Module {
    /// The cryptoki context. cryptoki 0.12 does not finalize on drop; the registry keeps this
    /// value (and the library) alive until the process exits.
    pub(super) ctx: Pkcs11,
    /// How many times the library had to be initialised again after someone called
    /// C_Finalize. Sessions opened under an older epoch are dead, and their handle numbers
    /// may have been reused, so they must be forgotten, never closed.
    epoch: AtomicU64,
    /// Whether Keyhold believes the module is initialised (see
    /// [`Module::ensure_initialized`]).
    initialized: std::sync::atomic::AtomicBool,
    /// SHA-256 of the user PIN each token last accepted in this process, by token label.
    accepted_pins: Mutex<HashMap<String, [u8; 32]>>,
    /// Calls that create or destroy token objects or tokens hold this exclusively, all
    /// other calls shared (see [`Module::write_guard`]).
    objects: RwLock<()>,
}

/// Every module loaded by this process, by canonical path.
///
/// A process-wide static is the right shape here, not a smell: PKCS#11 state is per process
/// (PKCS#11 v2.40 5.4: C_Initialize once per application; 5.6: login is per application and
/// token), so two independent contexts for one module would fight over it.
static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();

/// Recovers a mutex whose holder panicked: every value guarded here is valid after any
/// partial update (a map insert, a counter), so the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Loads and initialises `path` once per process; later calls return the same module.
///
/// Fails with [`KeyStoreError::Unavailable`] if the file does not exist, cannot be loaded as
/// a shared library, is not a PKCS#11 module, or refuses to initialise.
pub(super) fn load(path: &Path) -> Result<Arc<Module>, KeyStoreError> {
    let canonical = std::fs::canonicalize(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            KeyStoreError::Unavailable(format!(
                "pkcs#11 module {} not found: check keystore.module in keyhold.toml",
                path.display()
            ))
        } else {
            KeyStoreError::io(format!("cannot open pkcs#11 module {}", path.display()), e)
        }
    })?;

    let mut modules = lock(MODULES.get_or_init(Default::default));
    if let Some(module) = modules.get(&canonical) {
        let module = Arc::clone(module);
        drop(modules);
        // Someone may have called C_Finalize since: initialise again if so.
        module
            .ensure_initialized()
            .map_err(|e| init_failed(path, &e))?;
        return Ok(module);
    }

    let ctx = Pkcs11::new(&canonical).map_err(|e| match e {
        Error::LibraryLoading(cause) => KeyStoreError::Unavailable(format!(
            "{} is not a PKCS#11 module that can be loaded: {cause}",
            path.display()
        )),
        Error::MissingSymbol(symbol) => KeyStoreError::Unavailable(format!(
            "{} is not a PKCS#11 module: it exports no {symbol}",
            path.display()
        )),
        other => KeyStoreError::Unavailable(format!(
            "{} is not a usable PKCS#11 module: {}",
            path.display(),
            rv::describe(&other)
        )),
    })?;
    let module = Arc::new(Module {
        ctx,
        epoch: AtomicU64::new(0),
        initialized: std::sync::atomic::AtomicBool::new(true),
        accepted_pins: Mutex::new(HashMap::new()),
        objects: RwLock::new(()),
    });
    match module.ctx.initialize(init_args()) {
        // Another library in this process (or a test) initialised the module already:
        // PKCS#11 v2.40 5.4 makes that CKR_CRYPTOKI_ALREADY_INITIALIZED, which is fine.
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(init_failed(path, &e)),
    }
    modules.insert(canonical, Arc::clone(&module));
    Ok(module)
}

/// C_Initialize arguments: OS_LOCKING_OK, because key stores call the module from many
/// threads (PKCS#11 v2.40 5.4; SoftHSM2 corrupts its heap under threads without it).
fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

fn init_failed(path: &Path, err: &Error) -> KeyStoreError {
    KeyStoreError::Unavailable(format!(
        "pkcs#11 module {} failed to initialise: {}",
        path.display(),
        rv::describe(err)
    ))
}

impl Module {
    /// Calls C_Initialize again if the library was finalized behind our back; returns
    /// whether it had to (and then starts a new epoch).
    ///
    /// Calls C_Initialize only when Keyhold believes the module is not initialised (it
    /// failed to initialise, or a call answered CKR_CRYPTOKI_NOT_INITIALIZED, see
    /// [`Module::not_initialized`]): p11-kit's client module (0.24) crashes on a second
    /// C_Initialize, and on C_GetInfo, instead of answering.
    pub(super) fn ensure_initialized(&self) -> Result<bool, Error> {
        if self.initialized.load(Ordering::SeqCst) {
            return Ok(false);
        }
        match self.ctx.initialize(init_args()) {
            Ok(()) => {
                self.epoch.fetch_add(1, Ordering::SeqCst);
                self.initialized.store(true, Ordering::SeqCst);
                Ok(true)
            }
            Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                self.initialized.store(true, Ordering::SeqCst);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Notes that a call answered CKR_CRYPTOKI_NOT_INITIALIZED: someone called C_Finalize.
    pub(super) fn not_initialized(&self) {
        self.initialized.store(false, Ordering::SeqCst);
    }

    /// C_Finalize then C_Initialize: the cure for a module whose device went away, whose
    /// network HSM restarted, or which caches a token that is gone (SoftHSM2 re-reads its
    /// token directory only at C_Initialize; p11-kit's client reconnects only there).
    ///
    /// Waits up to `wait` (the signing deadline) for calls through Keyhold to finish. If
    /// calls are still inside the module after that (abandoned at their deadline by their
    /// callers), it is finalized under them only if `force`; otherwise this fails and the
    /// caller tries again later. Both ways have a cost, seen with p11-kit's client 0.24.1:
    /// finalizing under a call that is blocked on a *hung* server aborts the whole process
    /// when the server resumes and the call reads its answer (`rpc_transport_buffer:
    /// Assertion 'sock->refs > 0' failed`), while after a *killed* server some calls never
    /// return at all and only finalizing ends them. So callers force only after the calls
    /// had several deadlines to return (see `members::STUCK_GRACE`). Starts a new epoch
    /// even if C_Initialize then fails, so sessions of the old one are never reused.
    ///
    /// Fails, naming what happened, if calls are still running (without `force`) or the
    /// module refuses.
    pub(super) fn reinitialize(
        &self,
        wait: std::time::Duration,
        force: bool,
    ) -> Result<(), String> {
        let deadline = std::time::Instant::now() + wait;
        let _alone = loop {
            match self.objects.try_write() {
                Ok(guard) => break Some(guard),
                Err(std::sync::TryLockError::Poisoned(p)) => break Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() >= deadline {
                        if force {
                            break None;
                        }
                        return Err(
                            "calls abandoned at their deadline are still inside the module; \
                             it is re-initialised once they return"
                                .into(),
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        };
        if self.initialized.swap(false, Ordering::SeqCst) {
            match self.ctx.clone().finalize() {
                Ok(()) | Err(Error::Pkcs11(RvError::CryptokiNotInitialized, _)) => {}
                Err(e) => return Err(rv::describe(&e)),
            }
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match self.ctx.initialize(init_args()) {
            Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                self.initialized.store(true, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => Err(rv::describe(&e)),
        }
    }

    /// The current initialisation epoch (see [`Module::ensure_initialized`]).
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Holds off every other PKCS#11 call through this module in this process that goes
    /// through [`Module::read_guard`]: for creating or destroying objects and tokens.
    ///
    /// Two C_InitToken calls must not pick the same free slot, and SoftHSM2 2.6.1 (file
    /// object store) fails a C_GenerateKeyPair that runs while other threads create, find or
    /// use objects with CKR_GENERAL_ERROR (SoftHSMv2 issue #573: a reader re-indexes the
    /// half-written object file and marks it invalid). These are key ceremony operations,
    /// rare and slow anyway; the server only signs, and signing stays parallel.
    pub(super) fn write_guard(&self) -> RwLockWriteGuard<'_, ()> {
        self.objects.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shared access for every other call (see [`Module::write_guard`]).
    pub(super) fn read_guard(&self) -> RwLockReadGuard<'_, ()> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `token` accepted `pin` in a C_Login.
    pub(super) fn remember_pin(&self, token: &str, pin: &Secret) {
        lock(&self.accepted_pins).insert(token.to_owned(), pin_digest(pin));
    }

    /// Whether `pin` is the PIN `token` last accepted in this process; `None` if no login
    /// through Keyhold is known.
    ///
    /// PKCS#11 v2.40 5.6: login is per application, so a second C_Login in a process that
    /// is logged in returns CKR_USER_ALREADY_LOGGED_IN without checking the PIN. Comparing
    /// with the PIN that logged in keeps a wrong PIN from opening a second key store.
    pub(super) fn pin_matches(&self, token: &str, pin: &Secret) -> Option<bool> {
        lock(&self.accepted_pins).get(token).map(|known| {
            aws_lc_rs::constant_time::verify_slices_are_equal(known, &pin_digest(pin)).is_ok()
        })
    }
}

fn pin_digest(pin: &Secret) -> [u8; 32] {
    Sha256::digest(pin.expose().as_bytes()).into()
}
