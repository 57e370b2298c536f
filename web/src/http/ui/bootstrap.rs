//! First start: a UI with no administrator gets one, with a one-time password printed once.

use anyhow::{Context, Result};
use ca_core::users::{self, Role};

use crate::http::state::AppState;

/// If no enabled user holds the admin role, creates one (`admin`, or `admin-2`... if that
/// name is taken) with a one-time password, printed once on standard output (never logged)
/// and to be changed at the first sign-in. Returns the name created, if any.
///
/// Fails if the database fails.
pub fn ensure_admin(state: &AppState) -> Result<Option<String>> {
    let store = super::users(state);
    let existing = store.users().context("cannot read the UI users")?;
    if existing.iter().any(|u| u.has(Role::Admin) && !u.disabled) {
        return Ok(None);
    }
    let name = std::iter::once("admin".to_owned())
        .chain((2..).map(|n| format!("admin-{n}")))
        .find(|n| !existing.iter().any(|u| &u.name == n))
        .unwrap_or_else(|| "admin".to_owned());
    let created = users::create_with_one_time_password(
        store.as_ref(),
        &name,
        &[Role::Admin],
        "system",
        "startup",
    );
    let password = match created {
        Ok(p) => p,
        // Several processes sharing one database started together and another one created
        // the administrator first (and printed its password): nothing to do here.
        Err(e) if e.kind() == ca_core::error::ErrorKind::Conflict => {
            let now = store.users().context("cannot read the UI users")?;
            if now.iter().any(|u| u.has(Role::Admin) && !u.disabled) {
                return Ok(None);
            }
            return Err(e)
                .with_context(|| format!("cannot create the first UI administrator {name:?}"));
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create the first UI administrator {name:?}"));
        }
    };
    println!(
        "no UI administrator: created user {name:?} (admin) with the one-time password {}",
        password.as_str()
    );
    println!("  shown once; sign in at /ui/login and choose a new password");
    tracing::info!(user = %name, "created the first UI administrator");
    Ok(Some(name))
}
