//! The logged-in sessions of one token, shared by a key store and its signers, and the
//! reconnect that recovers them.
//!
//! Invariants:
//! - while a [`Connection`] is up it holds one session (the login session) that keeps the
//!   application logged in as CKU_USER (PKCS#11 v2.40 5.6: closing an application's last
//!   session with a token logs it out);
//! - idle sessions and cached object handles all belong to the current generation;
//!   a reconnect starts a new one and nothing from an older generation is reused;
//! - sessions from before a C_Finalize are forgotten, never closed: after C_Initialize the
//!   module may hand their handle numbers to new sessions;
//! - operations that create or destroy objects run alone in the process
//!   ([`Connection::run_exclusive`]); all others run in parallel ([`Connection::run`]).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLockWriteGuard};

use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::module::Module;
use super::rv::{self, Fault};
use crate::keystore::KeyStoreError;
use crate::secret::Secret;

/// Why an operation run on a pooled session failed.
pub(super) enum OpError {
    /// A PKCS#11 call failed; [`Connection::run`] decides whether a reconnect may help.
    Call(Error),
    /// The operation itself decided (a key not found, a bad attribute value ...).
    Store(KeyStoreError),
}

impl From<Error> for OpError {
    fn from(err: Error) -> Self {
        OpError::Call(err)
    }
}

impl From<KeyStoreError> for OpError {
    fn from(err: KeyStoreError) -> Self {
        OpError::Store(err)
    }
}

/// A failed operation, and what the failure says about the member (see [`rv::fault`]).
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) fault: Fault,
    pub(super) error: KeyStoreError,
}

impl Failure {
    fn module(error: KeyStoreError) -> Self {
        let fault = match error {
            // A PIN refused after a reconnect is the operator's problem, not the module's.
            KeyStoreError::WrongSecret(_) => Fault::Call,
            _ => Fault::Module,
        };
        Failure { fault, error }
    }
}

/// The session an operation runs on, and the generation it belongs to.
pub(super) struct Lease<'a> {
    /// The session: logged in as the user unless the login was lost.
    pub(super) session: &'a Session,
    generation: u64,
}

struct State {
    /// Bumped by every successful reconnect.
    generation: u64,
    /// The module's initialisation epoch the sessions below were opened in.
    epoch: u64,
    slot: Slot,
    /// Keeps the application logged in; `None` only after a failed reconnect.
    login: Option<Session>,
    idle: Vec<Session>,
    /// Private-key object handles by label and CKA_ID.
    keys: HashMap<(String, Vec<u8>), ObjectHandle>,
}

/// A token reached through a module, with a pool of logged-in sessions.
pub(super) struct Connection {
    module: Arc<Module>,
    /// The module path as configured, for messages.
    module_path: PathBuf,
    token: String,
    /// The token's serial number, if the member names one (CK_TOKEN_INFO.serialNumber).
    serial: Option<String>,
    /// Kept to log in again after a reconnect; `Secret` redacts itself in `Debug`.
    pin: Secret,
    max_idle: usize,
    state: Mutex<State>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("module", &self.module_path)
            .field("token", &self.token)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

/// Recovers a poisoned pool: the state is valid after any partial update (a push, a pop,
/// a clear), and a dead session is caught by the next call that uses it.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The slot holding the initialised token labelled `token`, if any.
///
/// Slot IDs are not stable (SoftHSM2 renumbers slots when a token is initialised), token
/// labels are (PKCS#11 v2.40 3.2 CK_TOKEN_INFO). Fails only if the module cannot list its
/// slots.
pub(super) fn slot_by_label(module: &Module, token: &str) -> Result<Option<Slot>, KeyStoreError> {
    slot_by_label_and_serial(module, token, None)
}

/// [`slot_by_label`], also matching the token's serial number when `serial` is given (two
/// members of one module may carry the same label).
pub(super) fn slot_by_label_and_serial(
    module: &Module,
    token: &str,
    serial: Option<&str>,
) -> Result<Option<Slot>, KeyStoreError> {
    let slots = module
        .ctx
        .get_slots_with_token()
        .map_err(|e| rv::failed(&e))?;
    for slot in slots {
        let info = module
            .ctx
            .get_token_info(slot)
            .map_err(|e| rv::failed(&e))?;
        if info.token_initialized()
            && info.label() == token
            && serial.is_none_or(|s| info.serial_number() == s)
        {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// The slot holding the token labelled `token`.
///
/// Fails with [`KeyStoreError::Unavailable`] if no initialised token has that label.
pub(super) fn find_token(
    module: &Module,
    module_path: &std::path::Path,
    token: &str,
) -> Result<Slot, KeyStoreError> {
    slot_by_label(module, token)?.ok_or_else(|| {
        KeyStoreError::Unavailable(format!(
            "no pkcs#11 token labelled {token:?} in module {}; run `keyhold hsm init-token` first",
            module_path.display()
        ))
    })
}

/// Fails early, at open, if the token lacks a mechanism Keyhold needs: CKM_EC_KEY_PAIR_GEN
/// to generate keys and CKM_ECDSA to sign (Keyhold hashes on the host, so it needs neither
/// CKM_ECDSA_SHA256 nor CKM_ECDSA_SHA384, which SoftHSM2 2.6 lacks).
///
/// Asks C_GetMechanismInfo for just these two: C_GetMechanismList would make cryptoki log an
/// `ERROR cryptoki::mechanism` line for each of the ~30 mechanisms SoftHSM2 offers that it
/// has no name for (issue 18), which teaches operators to ignore errors.
fn check_mechanisms(module: &Module, slot: Slot, token: &str) -> Result<(), KeyStoreError> {
    for (needed, name) in [
        (MechanismType::ECC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN"),
        (MechanismType::ECDSA, "CKM_ECDSA"),
    ] {
        match module.ctx.get_mechanism_info(slot, needed) {
            Ok(_) => {}
            Err(Error::Pkcs11(RvError::MechanismInvalid, _)) => {
                return Err(KeyStoreError::Unsupported(format!(
                    "pkcs#11 token {token:?} does not offer {name}, which keyhold needs for ecdsa keys"
                )));
            }
            Err(e) => return Err(rv::failed(&e)),
        }
    }
    Ok(())
}

/// The slot of a member's token: by label, and by serial number if the member names one.
fn find_member_token(
    module: &Module,
    module_path: &std::path::Path,
    token: &str,
    serial: Option<&str>,
) -> Result<Slot, KeyStoreError> {
    match serial {
        None => find_token(module, module_path, token),
        Some(serial) => slot_by_label_and_serial(module, token, Some(serial))?.ok_or_else(|| {
            KeyStoreError::Unavailable(format!(
                "no pkcs#11 token labelled {token:?} with serial {serial:?} in module {}",
                module_path.display()
            ))
        }),
    }
}

impl Connection {
    /// Finds the token, checks its mechanisms, opens the login session and logs in as
    /// CKU_USER.
    ///
    /// Fails with [`KeyStoreError::Unavailable`] for an unknown token,
    /// [`KeyStoreError::Unsupported`] for a token without ECDSA, and
    /// [`KeyStoreError::WrongSecret`] for a refused or locked PIN.
    pub(super) fn open(
        module: Arc<Module>,
        module_path: PathBuf,
        token: String,
        serial: Option<String>,
        pin: Secret,
        max_idle: usize,
    ) -> Result<Self, KeyStoreError> {
        let (slot, login) = {
            let _shared = module.read_guard();
            let slot = find_member_token(&module, &module_path, &token, serial.as_deref())?;
            check_mechanisms(&module, slot, &token)?;
            let login = module
                .ctx
                .open_rw_session(slot)
                .map_err(|e| rv::failed(&e))?;
            (slot, login)
        };
        let connection = Connection {
            state: Mutex::new(State {
                generation: 0,
                epoch: module.epoch(),
                slot,
                login: None,
                idle: Vec::new(),
                keys: HashMap::new(),
            }),
            module,
            module_path,
            token,
            serial,
            pin,
            max_idle: max_idle.max(1),
        };
        {
            let _shared = connection.module.read_guard();
            connection.log_in(&login)?;
        }
        lock(&connection.state).login = Some(login);
        Ok(connection)
    }

    /// Exclusive access to the module in this process, for creating and destroying objects
    /// (see [`Module::write_guard`]); pass it to [`Connection::run_exclusive`].
    pub(super) fn write_guard(&self) -> RwLockWriteGuard<'_, ()> {
        self.module.write_guard()
    }

    /// The token's label.
    pub(super) fn token(&self) -> &str {
        &self.token
    }

    /// Logs the application in as CKU_USER through `session`.
    fn log_in(&self, session: &Session) -> Result<(), KeyStoreError> {
        let pin = AuthPin::from(self.pin.expose());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) => {
                self.module.remember_pin(&self.token, &self.pin);
                Ok(())
            }
            // PKCS#11 v2.40 5.6: login is per application; another key store in this process
            // logged in already. The token did not check this PIN, so compare it with the
            // one that logged in.
            Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                match self.module.pin_matches(&self.token, &self.pin) {
                    Some(false) => Err(self.pin_refused()),
                    Some(true) | None => Ok(()),
                }
            }
            Err(Error::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            )) => Err(self.pin_refused()),
            Err(Error::Pkcs11(RvError::PinLocked, _)) => Err(KeyStoreError::WrongSecret(format!(
                "the pkcs#11 user pin of token {:?} is locked after too many wrong attempts; \
                 the security officer must reset it",
                self.token
            ))),
            Err(Error::Pkcs11(RvError::PinExpired, _)) => Err(KeyStoreError::WrongSecret(format!(
                "the pkcs#11 user pin of token {:?} has expired; change it with the token's tools",
                self.token
            ))),
            Err(Error::Pkcs11(RvError::UserPinNotInitialized, _)) => {
                Err(KeyStoreError::Unavailable(format!(
                    "pkcs#11 token {:?} has no user pin yet; run `keyhold hsm init-token`",
                    self.token
                )))
            }
            Err(Error::Pkcs11(RvError::UserAnotherAlreadyLoggedIn, _)) => {
                Err(KeyStoreError::Unavailable(format!(
                    "the security officer is logged in to pkcs#11 token {:?} in this process; \
                     the key store logs in only as the user",
                    self.token
                )))
            }
            Err(other) => Err(rv::failed(&other)),
        }
    }

    fn pin_refused(&self) -> KeyStoreError {
        KeyStoreError::WrongSecret(format!(
            "the pkcs#11 user pin was refused by token {:?}",
            self.token
        ))
    }

    /// Runs `op` on a pooled session. If it fails because the session, the login or the
    /// module went away, reconnects and runs it once more.
    ///
    /// Fails with the operation's own error, or [`KeyStoreError::Unavailable`] naming the
    /// token when the second attempt also finds the token unreachable.
    pub(super) fn run<T>(
        &self,
        op: impl Fn(&Lease<'_>) -> Result<T, OpError>,
    ) -> Result<T, KeyStoreError> {
        self.run_sorted(op).map_err(|f| f.error)
    }

    /// [`Connection::run`], saying what kind of fault a failure was, so that a key store
    /// with several members can decide to take this one out.
    pub(super) fn run_sorted<T>(
        &self,
        op: impl Fn(&Lease<'_>) -> Result<T, OpError>,
    ) -> Result<T, Failure> {
        let _shared = self.module.read_guard();
        self.run_unguarded(op)
    }

    /// [`Connection::run`] for an operation that creates or destroys objects, while the
    /// caller holds [`Connection::write_guard`].
    pub(super) fn run_exclusive<T>(
        &self,
        _exclusive: &RwLockWriteGuard<'_, ()>,
        op: impl Fn(&Lease<'_>) -> Result<T, OpError>,
    ) -> Result<T, KeyStoreError> {
        self.run_unguarded(op).map_err(|f| f.error)
    }

    /// Steps: 1. try on a pooled session; 2. if the session, login or module went away,
    /// reconnect (a new session and login) and try once more; 3. sort what is left.
    fn run_unguarded<T>(
        &self,
        op: impl Fn(&Lease<'_>) -> Result<T, OpError>,
    ) -> Result<T, Failure> {
        let (generation, first) = self.attempt(&op).map_err(Failure::module)?;
        let sort = |e: OpError| match e {
            OpError::Call(err) => match rv::fault(&err) {
                Fault::Call => Failure {
                    fault: Fault::Call,
                    error: rv::failed(&err),
                },
                fault => Failure {
                    fault,
                    error: self.unreachable(&err),
                },
            },
            OpError::Store(error) => Failure {
                fault: Fault::Call,
                error,
            },
        };
        if let Err(OpError::Call(Error::Pkcs11(RvError::CryptokiNotInitialized, _))) = &first {
            self.module.not_initialized();
        }
        match first {
            Err(OpError::Call(err)) if rv::needs_reconnect(&err) => {
                self.reconnect(generation).map_err(Failure::module)?;
                let (_, second) = self.attempt(&op).map_err(Failure::module)?;
                second.map_err(sort)
            }
            other => other.map_err(sort),
        }
    }

    /// One try of `op` on a session from the pool (or a new one); returns the generation
    /// the session belonged to. Fails outright only if a needed reconnect fails.
    fn attempt<T>(
        &self,
        op: &impl Fn(&Lease<'_>) -> Result<T, OpError>,
    ) -> Result<(u64, Result<T, OpError>), KeyStoreError> {
        let (generation, epoch, slot, idle) = {
            let mut state = lock(&self.state);
            if state.epoch != self.module.epoch() {
                // The library was finalized and initialised again since these sessions were
                // opened: they are dead, whatever the module would answer now.
                let generation = state.generation;
                drop(state);
                self.reconnect(generation)?;
                state = lock(&self.state);
            }
            (state.generation, state.epoch, state.slot, state.idle.pop())
        };
        let session = match idle {
            Some(session) => session,
            // PKCS#11 v2.40 5.6: a new session of a logged-in application is logged in too.
            None => match self.module.ctx.open_rw_session(slot) {
                Ok(session) => session,
                Err(err) => return Ok((generation, Err(OpError::Call(err)))),
            },
        };
        let result = op(&Lease {
            session: &session,
            generation,
        });
        let broken = matches!(&result, Err(OpError::Call(err)) if rv::needs_reconnect(err));
        self.check_in(session, generation, epoch, broken);
        Ok((generation, result))
    }

    /// Returns a session to the pool, or closes it if it is broken, stale or surplus.
    fn check_in(&self, session: Session, generation: u64, epoch: u64, broken: bool) {
        let mut state = lock(&self.state);
        if !broken && state.generation == generation && state.idle.len() < self.max_idle {
            state.idle.push(session);
            return;
        }
        drop(state);
        self.retire(session, epoch);
    }

    /// Closes a session we no longer use, unless the library was re-initialised since it was
    /// opened: then its handle number may belong to someone else's new session, and the
    /// only safe thing is to forget it (cryptoki would close it on drop).
    fn retire(&self, session: Session, epoch: u64) {
        if epoch == self.module.epoch() {
            drop(session);
        } else {
            std::mem::forget(session);
        }
    }

    /// Drops every pooled session and cached handle, finds the token again by label, opens
    /// a session and logs in. Does nothing if another thread reconnected since
    /// `generation`.
    ///
    /// Fails with [`KeyStoreError::Unavailable`] naming the token, or
    /// [`KeyStoreError::WrongSecret`] if the token no longer accepts the PIN.
    fn reconnect(&self, generation: u64) -> Result<(), KeyStoreError> {
        let mut state = lock(&self.state);
        if state.generation != generation {
            return Ok(());
        }
        // 1. Initialise the library again if someone called C_Finalize
        //    (CKR_CRYPTOKI_NOT_INITIALIZED); already initialised is the usual answer.
        self.module
            .ensure_initialized()
            .map_err(|e| self.unreachable(&e))?;
        let old_epoch = state.epoch;
        // 2. Forget everything tied to the old sessions and login (PKCS#11 v2.40 5.6
        //    C_Logout: the application's handles to private objects die with the login).
        state.keys.clear();
        for session in std::mem::take(&mut state.idle) {
            self.retire(session, old_epoch);
        }
        if old_epoch != self.module.epoch()
            && let Some(login) = state.login.take()
        {
            std::mem::forget(login);
        }
        // 3. Slot IDs may have changed: find the token by label.
        let slot = find_member_token(
            &self.module,
            &self.module_path,
            &self.token,
            self.serial.as_deref(),
        )
        .map_err(|e| self.unreachable_because(&e.to_string()))?;
        // 4. A fresh session, logged in. The old login session (if it still lives) is
        //    replaced only now, so an application that is still logged in stays so.
        let session = self
            .module
            .ctx
            .open_rw_session(slot)
            .map_err(|e| self.unreachable(&e))?;
        self.log_in(&session).map_err(|e| match e {
            KeyStoreError::WrongSecret(_) => e,
            other => self.unreachable_because(&other.to_string()),
        })?;
        // 5. Publish the new generation.
        if let Some(old) = state.login.replace(session) {
            self.retire(old, old_epoch);
        }
        state.slot = slot;
        state.epoch = self.module.epoch();
        state.generation = state.generation.wrapping_add(1);
        Ok(())
    }

    fn unreachable(&self, err: &Error) -> KeyStoreError {
        self.unreachable_because(&rv::describe(err))
    }

    fn unreachable_because(&self, cause: &str) -> KeyStoreError {
        KeyStoreError::Unavailable(format!(
            "pkcs#11 token {:?} in module {} is unreachable even after reconnecting: {cause}",
            self.token,
            self.module_path.display()
        ))
    }

    /// The private key with this label and CKA_ID, from the cache or found on the token.
    ///
    /// A signer names its key by both, so that a key destroyed and generated again under the
    /// same label is not mistaken for the old one. Fails with [`OpError::Store`] holding
    /// [`KeyStoreError::NotFound`] if there is none, or [`KeyStoreError::Corrupt`] if
    /// several private keys match.
    pub(super) fn private_key(
        &self,
        lease: &Lease<'_>,
        label: &str,
        id: &[u8],
    ) -> Result<ObjectHandle, OpError> {
        let cache_key = (label.to_owned(), id.to_vec());
        if let Some(handle) = lock(&self.state).keys.get(&cache_key) {
            return Ok(*handle);
        }
        let found = lease.session.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ])?;
        let handle = match found.as_slice() {
            [] => return Err(KeyStoreError::NotFound(label.to_owned()).into()),
            [one] => *one,
            many => {
                return Err(KeyStoreError::Corrupt(format!(
                    "{} private keys labelled {label:?} in pkcs#11 token {:?} share one CKA_ID",
                    many.len(),
                    self.token
                ))
                .into());
            }
        };
        let mut state = lock(&self.state);
        if state.generation == lease.generation {
            state.keys.insert(cache_key, handle);
        }
        Ok(handle)
    }

    /// Drops the cached handles for `label` (after the key was destroyed).
    pub(super) fn forget_key(&self, label: &str) {
        lock(&self.state)
            .keys
            .retain(|(cached, _), _| cached != label);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Close pooled sessions before the login session, so the application stays logged
        // in until the very end; forget any from a finalized library instance.
        let mut state = lock(&self.state);
        let epoch = state.epoch;
        let idle = std::mem::take(&mut state.idle);
        let login = state.login.take();
        drop(state);
        for session in idle {
            self.retire(session, epoch);
        }
        if let Some(login) = login {
            self.retire(login, epoch);
        }
    }
}
