//! Endpoints without authentication: CA certificates, liveness and readiness.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// PEM content type for certificates.
pub const PEM: &str = "application/x-pem-file";
/// DER content type for a certificate (RFC 2585).
pub const DER: &str = "application/pkix-cert";

/// `GET /ca/{file}`: `root.pem`, `{issuer}.pem`, `{issuer}.der`, `{issuer}.crt`.
pub async fn ca_cert(
    state: web::Data<AppState>,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let unknown = || ApiError::not_found(format!("no CA certificate {:?}", file.as_str()));
    let (name, ext) = file.rsplit_once('.').ok_or_else(unknown)?;
    let ca = state.ca_files.get(name).ok_or_else(unknown)?;
    Ok(match ext {
        "pem" => HttpResponse::Ok().content_type(PEM).body(ca.pem.clone()),
        "der" | "crt" => HttpResponse::Ok().content_type(DER).body(ca.der.clone()),
        _ => return Err(unknown()),
    })
}

/// `GET /ca/{issuer}/chain.pem`: the issuer and every CA above it, root last.
pub async fn ca_chain(
    state: web::Data<AppState>,
    issuer: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ca = state
        .ca_files
        .get(issuer.as_str())
        .ok_or_else(|| ApiError::not_found(format!("no CA {:?}", issuer.as_str())))?;
    Ok(HttpResponse::Ok()
        .content_type(PEM)
        .body(ca.chain_pem.clone()))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database and the key store answer; 503 naming which does not.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let probes = state.probes.clone();
    let (db, keys) = web::block(move || {
        let db = probes.database();
        let keys = probes.key_store().map_err(|e| e.to_string());
        (db, keys)
    })
    .await?;
    let show = |r: &Result<(), String>, what: &str| match r {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(request_id = %crate::http::error::request_id(), error = %e, "{what} is not ready");
            "unavailable"
        }
    };
    let ready = db.is_ok() && keys.is_ok();
    let mut body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "node": state.probes.db.node().map(|n| n.name.as_str()),
        "database": show(&db, "database"),
        "key_store": show(&keys, "key store"),
    });
    // Each HSM member: in or out, its last error and latency (issue 18).
    let members = state.probes.keys.members();
    if !members.is_empty() {
        body["hsm_members"] = members
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "state": m.state.as_str(),
                    "last_error": m.last_error,
                    "last_latency_ms": m.last_latency.map(|d| d.as_secs_f64() * 1000.0),
                    "in_flight": m.in_flight,
                    "max_in_flight": m.max_in_flight,
                })
            })
            .collect();
    }
    // What still works without the key store, so that an operator knows what is degraded.
    if keys.is_err() {
        body["degraded"] = json!([
            "issuance and code signing fail until the key store is back",
            format!(
                "OCSP serves the {} answers signed earlier, each until its nextUpdate; \
                 new answers (nonces, new certificates, revocations) get tryLater",
                state.publisher.answers_held()
            ),
            "CRLs are served from the last one signed, until its nextUpdate",
        ]);
    }
    // Backups (issue 19): overdue when none succeeded within twice `[backup] every`. Serving
    // is unaffected, so this degrades without making the node unready.
    if let Some(backups) = &state.backups {
        let overdue = backups.overdue(std::time::SystemTime::now());
        body["backup"] = json!(if overdue.is_some() { "overdue" } else { "ok" });
        if let Some(why) = overdue {
            match body["degraded"].as_array_mut() {
                Some(list) => list.push(json!(why)),
                None => body["degraded"] = json!([why]),
            }
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(HttpResponse::build(status).json(body))
}

/// `GET /metrics`.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut out = state.metrics.render();
    crate::http::metrics::render_members(&mut out, &state.probes.keys.members());
    if let Some(node) = state.probes.db.node() {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP keyhold_node_info This process's node name (several nodes may share one database).\n\
             # TYPE keyhold_node_info gauge\n\
             keyhold_node_info{{node=\"{}\"}} 1",
            node.name
        );
    }
    if let Some(backups) = &state.backups {
        use std::fmt::Write;
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        let _ = writeln!(
            out,
            "# HELP keyhold_backup_last_success_timestamp_seconds When the last scheduled backup succeeded (0: none yet).\n\
             # TYPE keyhold_backup_last_success_timestamp_seconds gauge\n\
             keyhold_backup_last_success_timestamp_seconds {}\n\
             # HELP keyhold_backup_last_failure_timestamp_seconds When the last scheduled backup failed (0: never).\n\
             # TYPE keyhold_backup_last_failure_timestamp_seconds gauge\n\
             keyhold_backup_last_failure_timestamp_seconds {}\n\
             # HELP keyhold_backup_last_bytes Size of the last scheduled backup.\n\
             # TYPE keyhold_backup_last_bytes gauge\n\
             keyhold_backup_last_bytes {}",
            backups.last_success().map_or(0, |(t, ..)| secs(t)),
            backups.last_failure().map_or(0, |(t, _)| secs(t)),
            backups.last_success().map_or(0, |(.., n)| n),
        );
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// One CA on the plain listener's front page.
#[derive(Debug)]
pub struct HomeCa {
    /// The issuer id (`root`, `issuing-ca`, ...): names its certificate and CRL files.
    pub id: String,
}

/// `home.html`: what the plain HTTP listener publishes, and where the UI is.
#[derive(Debug, askama::Template)]
#[template(path = "home.html")]
pub struct HomePage {
    /// `http://host:port` as the client reached this listener.
    pub base: String,
    /// Every CA, root first.
    pub cas: Vec<HomeCa>,
    /// The HTTPS UI's address, if there is an HTTPS listener.
    pub ui: Option<String>,
}

/// `GET /`: where the UI serves (HTTPS, or plain HTTP with `--insecure-http-ui`), a
/// redirect to `/ui/`; on the public plain HTTP listener, a short page naming the CA
/// certificates, CRLs, OCSP and the HTTPS UI address.
pub async fn home(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let plain = req.app_data::<web::Data<crate::serve::PlainHttp>>();
    if req.app_config().secure() || plain.is_none_or(|p| p.ui) {
        return Ok(HttpResponse::Found()
            .insert_header((actix_web::http::header::LOCATION, "/ui/"))
            .finish());
    }
    let host = req.connection_info().host().to_owned();
    let page = HomePage {
        base: format!("http://{host}"),
        cas: state
            .ca
            .issuers()
            .iter()
            .map(|i| HomeCa {
                id: i.id.as_str().to_owned(),
            })
            .collect(),
        ui: plain
            .and_then(|p| p.https)
            .map(|addr| format!("{}/ui/", crate::serve::https_base(&host, addr))),
    };
    let html = askama::Template::render(&page)
        .map_err(|e| ApiError::server(ca_core::error::ErrorKind::Internal, &e))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}
