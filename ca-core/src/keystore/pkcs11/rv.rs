//! Turning cryptoki errors into [`KeyStoreError`]s that name the PKCS#11 call and its CKR
//! code, and deciding which failures a reconnect can cure.

use cryptoki::error::{Error, RvError};

use crate::keystore::KeyStoreError;

/// The PKCS#11 name of a return value, e.g. `CKR_PIN_INCORRECT`.
///
/// cryptoki's `Display` for return values is a paragraph of prose; operators search for the
/// CKR name. cryptoki's variant names are the CKR names in CamelCase (checked for every
/// variant of cryptoki 0.12), so the name is rebuilt from the variant.
pub(super) fn ckr_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => format!("vendor-defined CKR {code:#x}"),
        RvError::UnknownErrorCode(code) => format!("unknown CKR {code:#x}"),
        other => {
            let camel = format!("{other:?}");
            let mut name = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

/// The return value inside a cryptoki error, if the module returned one.
pub(super) fn rv_of(err: &Error) -> Option<RvError> {
    match err {
        Error::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// `"C_Sign failed: CKR_FUNCTION_FAILED"`, or cryptoki's own message for failures that
/// happened before the module was called.
pub(super) fn describe(err: &Error) -> String {
    match err {
        Error::Pkcs11(rv, function) => format!("C_{function:?} failed: {}", ckr_name(*rv)),
        other => format!("cryptoki: {other}"),
    }
}

/// The generic mapping: a PKCS#11 call failed in a way no caller handles specially.
pub(super) fn failed(err: &Error) -> KeyStoreError {
    KeyStoreError::Pkcs11(describe(err))
}

/// Whether `err` means the session, the login or the module went away, so that dropping
/// every session and logging in again may cure it.
///
/// PKCS#11 v2.40 5.1: session handles die with their session (CKR_SESSION_HANDLE_INVALID,
/// CKR_SESSION_CLOSED); removing the token ends every session (CKR_DEVICE_REMOVED,
/// CKR_TOKEN_NOT_PRESENT); closing the last session logs the application out
/// (CKR_USER_NOT_LOGGED_IN) and private-object handles die with the login
/// (CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID); C_Finalize anywhere in the process
/// makes every call return CKR_CRYPTOKI_NOT_INITIALIZED.
pub(super) fn needs_reconnect(err: &Error) -> bool {
    matches!(
        rv_of(err),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::DeviceError
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::CryptokiNotInitialized
        )
    )
}

/// What a failed call says about where the fault is, which decides the recovery (issue 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// The session or its login went away: replace the session and retry once.
    Session,
    /// The module or the device behind it failed: take the member out and re-initialise the
    /// module (C_Finalize, C_Initialize) in the background, with back-off.
    Module,
    /// The call was refused for its own reasons (bad data, unknown mechanism ...): neither
    /// a new session nor a new module would help.
    Call,
}

/// Sorts a failed call by [`Fault`].
///
/// PKCS#11 v2.40 5.1 and 11.1: CKR_SESSION_HANDLE_INVALID and CKR_SESSION_CLOSED mean the
/// session died; CKR_USER_NOT_LOGGED_IN that the login did (and with it the handles of
/// private objects, CKR_OBJECT_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID).
/// CKR_CRYPTOKI_NOT_INITIALIZED, CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT
/// and CKR_GENERAL_ERROR say the module or the device is in trouble; cryptoki's own errors
/// before the call (a missing function) are [`Fault::Call`]. Vendor-defined codes are
/// [`Fault::Module`]: their meaning is unknown, and a member that answers with them should
/// prove itself with a probe signature before it signs again.
pub(super) fn fault(err: &Error) -> Fault {
    match rv_of(err) {
        Some(
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::ObjectHandleInvalid
            | RvError::KeyHandleInvalid,
        ) => Fault::Session,
        Some(
            RvError::CryptokiNotInitialized
            | RvError::DeviceError
            | RvError::DeviceRemoved
            | RvError::DeviceMemory
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::GeneralError
            | RvError::SlotIdInvalid
            | RvError::VendorDefined(_)
            | RvError::UnknownErrorCode(_),
        ) => Fault::Module,
        _ => Fault::Call,
    }
}

#[cfg(test)]
mod tests {
    use cryptoki::context::Function;

    use super::*;

    #[test]
    fn names_return_values_as_the_standard_does() {
        assert_eq!(ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(ckr_name(RvError::FunctionFailed), "CKR_FUNCTION_FAILED");
        assert_eq!(
            ckr_name(RvError::CryptokiAlreadyInitialized),
            "CKR_CRYPTOKI_ALREADY_INITIALIZED"
        );
        assert_eq!(ckr_name(RvError::SlotIdInvalid), "CKR_SLOT_ID_INVALID");
        assert_eq!(
            ckr_name(RvError::VendorDefined(0x8000_0001)),
            "vendor-defined CKR 0x80000001"
        );
    }

    #[test]
    fn describes_the_call_and_the_code() {
        let err = Error::Pkcs11(RvError::FunctionFailed, Function::Sign);
        assert_eq!(describe(&err), "C_Sign failed: CKR_FUNCTION_FAILED");
        let err = Error::Pkcs11(RvError::PinLenRange, Function::InitPIN);
        assert_eq!(describe(&err), "C_InitPIN failed: CKR_PIN_LEN_RANGE");
    }

    #[test]
    fn only_lost_sessions_and_logins_trigger_a_reconnect() {
        let lost = Error::Pkcs11(RvError::SessionHandleInvalid, Function::SignInit);
        let logged_out = Error::Pkcs11(RvError::UserNotLoggedIn, Function::SignInit);
        let bad_data = Error::Pkcs11(RvError::DataLenRange, Function::Sign);
        assert!(needs_reconnect(&lost));
        assert!(needs_reconnect(&logged_out));
        assert!(!needs_reconnect(&bad_data));
        assert!(!needs_reconnect(&Error::NotSupported));
    }

    #[test]
    fn sorts_faults_as_issue_18_asks() {
        let f = |rv| fault(&Error::Pkcs11(rv, Function::Sign));
        for rv in [
            RvError::SessionHandleInvalid,
            RvError::SessionClosed,
            RvError::UserNotLoggedIn,
        ] {
            assert_eq!(f(rv), Fault::Session, "{rv:?}");
        }
        for rv in [
            RvError::CryptokiNotInitialized,
            RvError::DeviceError,
            RvError::DeviceRemoved,
            RvError::TokenNotPresent,
            RvError::GeneralError,
            RvError::VendorDefined(0x8000_0001),
        ] {
            assert_eq!(f(rv), Fault::Module, "{rv:?}");
        }
        assert_eq!(f(RvError::DataLenRange), Fault::Call);
        assert_eq!(fault(&Error::NotSupported), Fault::Call);
    }
}
