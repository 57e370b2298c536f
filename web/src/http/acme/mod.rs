//! ACME (RFC 8555) on the HTTPS listener, under `/acme`: one file per resource. Handlers
//! read the JWS, let ca-core's [`AcmeService`] decide, and render its answer; every response,
//! errors included, carries a fresh `Replay-Nonce` and `Link: <directory>;rel="index"`.

pub mod account;
pub mod directory;
pub mod dns;
pub mod http01;
pub mod order;
pub mod revoke;
pub mod tls_alpn;
pub mod validate;

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use ca_core::acme::jwk::Jwk;
use ca_core::acme::jws::{Jws, JwsKey, KeyRule, MAX_JWS_BYTES};
use ca_core::acme::nonce::{self, NonceLedger, RedeemError};
use ca_core::acme::service::AcmeService;
use ca_core::acme::store::Account;
use ca_core::acme::{AcmeProblem, ProblemKind};
use serde_json::{Value, json};

use crate::http::state::AppState;

/// The ACME server's parts, present when `[acme] enabled = true`.
pub struct Acme {
    /// Decides.
    pub service: Arc<AcmeService>,
    /// Redeemed nonces, shared by every node through the database.
    pub nonces: Arc<dyn NonceLedger>,
    /// Challenges to validate, off the request path.
    pub queue: validate::Queue,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// The `/acme` routes.
pub fn scope() -> actix_web::Scope {
    web::scope("/acme")
        .route("/directory", web::get().to(directory::directory))
        .route("/new-nonce", web::get().to(directory::new_nonce))
        .route("/renewal-info/{id}", web::get().to(directory::renewal_info))
        .route("/new-account", web::post().to(account::new_account))
        .route("/account/{id}", web::post().to(account::account))
        .route("/account/{id}/orders", web::post().to(account::orders))
        .route("/key-change", web::post().to(account::key_change))
        .route("/new-order", web::post().to(order::new_order))
        .route("/order/{id}", web::post().to(order::order))
        .route("/order/{id}/finalize", web::post().to(order::finalize))
        .route("/authz/{id}", web::post().to(order::authz))
        .route("/chall/{id}", web::post().to(order::challenge))
        .route("/cert/{id}", web::post().to(order::certificate))
        .route("/revoke-cert", web::post().to(revoke::revoke_cert))
        .default_service(web::to(not_found))
}

async fn not_found(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    respond(
        &req,
        &state,
        Err(AcmeProblem::malformed("no such ACME resource")),
    )
}

/// What a handler answers with.
#[derive(Debug)]
pub struct Reply {
    status: StatusCode,
    body: Body,
    location: Option<String>,
    links: Vec<String>,
    retry_after: Option<u64>,
}

#[derive(Debug)]
enum Body {
    Json(Value),
    Pem(String),
    Empty,
}

impl Reply {
    /// A JSON resource.
    pub fn json(status: StatusCode, value: Value) -> Self {
        Reply {
            status,
            body: Body::Json(value),
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }

    /// `application/pem-certificate-chain`.
    pub fn pem(text: String) -> Self {
        Reply {
            status: StatusCode::OK,
            body: Body::Pem(text),
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }

    /// No body.
    pub fn empty(status: StatusCode) -> Self {
        Reply {
            status,
            body: Body::Empty,
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }

    /// With a `Location`.
    pub fn location(mut self, url: String) -> Self {
        self.location = Some(url);
        self
    }

    /// With a `Link` (already formatted: `<url>;rel="up"`).
    pub fn link(mut self, link: String) -> Self {
        self.links.push(link);
        self
    }

    /// With `Retry-After` seconds.
    pub fn retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }
}

/// The HTTP status RFC 8555 gives each problem.
fn problem_status(p: &AcmeProblem) -> StatusCode {
    match p.kind {
        ProblemKind::Unauthorized
        | ProblemKind::ExternalAccountRequired
        | ProblemKind::OrderNotReady => StatusCode::FORBIDDEN,
        ProblemKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ProblemKind::ServerInternal => StatusCode::INTERNAL_SERVER_ERROR,
        ProblemKind::Malformed if p.detail.starts_with("no such") => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A problem document (RFC 7807) for `p`.
pub fn problem_json(p: &AcmeProblem) -> Value {
    json!({
        "type": p.type_urn(),
        "detail": p.detail,
        "status": problem_status(p).as_u16(),
    })
}

/// `https://host/acme`, as the client reached us (the JWS `url` must match it exactly).
pub fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}/acme", info.scheme(), info.host())
}

/// Renders `result` with the headers every ACME response carries.
pub fn respond(
    req: &HttpRequest,
    state: &AppState,
    result: Result<Reply, AcmeProblem>,
) -> HttpResponse {
    let base = base_url(req);
    match result {
        Ok(reply) => finish(state, &base, reply, false),
        Err(p) => {
            let retry = (p.kind == ProblemKind::RateLimited).then_some(60);
            let reply = Reply::json(problem_status(&p), problem_json(&p)).retry_after(retry);
            finish(state, &base, reply, true)
        }
    }
}

fn finish(state: &AppState, base: &str, reply: Reply, problem: bool) -> HttpResponse {
    let mut res = HttpResponse::build(reply.status);
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(acme) = &state.acme {
        match acme.service.secret().nonce_key().mint(SystemTime::now()) {
            Ok(n) => {
                res.insert_header(("Replay-Nonce", n));
            }
            Err(e) => tracing::error!(error = %e.detail, "cannot mint a nonce"),
        }
    }
    res.append_header((header::LINK, format!("<{base}/directory>;rel=\"index\"")));
    for l in &reply.links {
        res.append_header((header::LINK, l.as_str()));
    }
    if let Some(loc) = &reply.location {
        res.insert_header((header::LOCATION, loc.as_str()));
    }
    if let Some(secs) = reply.retry_after {
        res.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    match reply.body {
        Body::Json(v) => {
            let ct = if problem {
                "application/problem+json"
            } else {
                "application/json"
            };
            res.content_type(ct).body(v.to_string())
        }
        Body::Pem(text) => res
            .content_type("application/pem-certificate-chain")
            .body(text),
        Body::Empty => res.finish(),
    }
}

/// A POST whose JWS verified and whose nonce was redeemed.
#[derive(Debug)]
pub struct Signed {
    /// The payload; `None` for POST-as-GET.
    pub payload: Option<Value>,
    /// The account, for a `kid` request.
    pub account: Option<Account>,
    /// The key, for a `jwk` request.
    pub jwk: Option<Jwk>,
    /// The JWS's url (the request URL).
    pub url: String,
    /// The JWS itself (keyChange reads its url again).
    pub jws: Jws,
}

/// Where a request is and who sent it.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `https://host/acme`.
    pub base: String,
    /// The `{id}` path segment, if the route has one.
    pub id: String,
    /// The client address, for the audit log.
    pub source: String,
    /// When the request arrived.
    pub now: SystemTime,
}

/// Checks a JWS (RFC 8555 6.2–6.5): its form and algorithm, `url`, the key rule, the
/// signature by the account's key or the embedded one, and last its nonce, which is redeemed
/// cluster-wide. Nothing else is written before all of that passed.
fn verify(
    acme: &Acme,
    body: &[u8],
    url: &str,
    rule: KeyRule,
    ctx: &Ctx,
) -> Result<Signed, AcmeProblem> {
    if body.len() > MAX_JWS_BYTES {
        return Err(AcmeProblem::malformed(format!(
            "the request body exceeds {MAX_JWS_BYTES} bytes"
        )));
    }
    let jws = Jws::parse(body)?;
    jws.check_key_rule(rule)?;
    jws.check_url(url)?;
    let nonce = jws.nonce()?.to_owned();
    let (account, key) = match &jws.key {
        JwsKey::Kid(kid) => {
            let id = kid
                .strip_prefix(&format!("{}/account/", ctx.base))
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .ok_or_else(|| {
                    AcmeProblem::new(
                        ProblemKind::AccountDoesNotExist,
                        "kid is not an account URL of this server",
                    )
                })?;
            let account = acme.service.account(id)?;
            let key = acme.service.account_key(&account)?;
            (Some(account), key)
        }
        JwsKey::Jwk(jwk) => (None, jwk.clone()),
    };
    let payload = jws.verify(&key)?;
    match nonce::redeem(
        acme.service.secret().nonce_key(),
        acme.nonces.as_ref(),
        &nonce,
        ctx.now,
    ) {
        Ok(()) => {}
        Err(RedeemError::Refused(p)) => return Err(p),
        Err(RedeemError::Store(e)) => {
            tracing::error!(error = %e, "cannot redeem an ACME nonce");
            return Err(AcmeProblem::new(
                ProblemKind::ServerInternal,
                "the server failed; try again",
            ));
        }
    }
    Ok(Signed {
        payload,
        jwk: account.is_none().then_some(key),
        account,
        url: url.to_owned(),
        jws,
    })
}

/// A resource handler: runs on the blocking pool with the verified request.
pub type Handler = fn(&Acme, Signed, &Ctx) -> Result<Reply, AcmeProblem>;

/// Reads the body (at most [`MAX_JWS_BYTES`], else `malformed`), verifies it with `rule`,
/// and runs `handler` off the async workers.
pub async fn post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    rule: KeyRule,
    handler: Handler,
) -> HttpResponse {
    let Some(acme) = state.acme.clone() else {
        return HttpResponse::NotFound().finish();
    };
    let body = match payload.to_bytes_limited(MAX_JWS_BYTES + 1).await {
        Ok(Ok(b)) if b.len() <= MAX_JWS_BYTES => b,
        Ok(_) => {
            return respond(
                &req,
                &state,
                Err(AcmeProblem::malformed(format!(
                    "the request body exceeds {MAX_JWS_BYTES} bytes"
                ))),
            );
        }
        Err(e) => {
            return respond(
                &req,
                &state,
                Err(AcmeProblem::malformed(format!("cannot read the body: {e}"))),
            );
        }
    };
    let ctx = Ctx {
        base: base_url(&req),
        id: req.match_info().get("id").unwrap_or_default().to_owned(),
        source: req
            .peer_addr()
            .map_or_else(|| "unknown".into(), |a| a.ip().to_string()),
        now: SystemTime::now(),
    };
    let url = format!("{}{}", ctx.base.trim_end_matches("/acme"), req.path());
    let result = web::block(move || {
        let signed = verify(&acme, &body, &url, rule, &ctx)?;
        handler(&acme, signed, &ctx)
    })
    .await
    .unwrap_or_else(|_| {
        Err(AcmeProblem::new(
            ProblemKind::ServerInternal,
            "the server failed; try again",
        ))
    });
    respond(&req, &state, result)
}

/// The account of a `kid` request (the key rule guarantees it).
pub fn account_of(signed: &Signed) -> Result<&Account, AcmeProblem> {
    signed
        .account
        .as_ref()
        .ok_or_else(|| AcmeProblem::malformed("this resource takes a kid"))
}

/// RFC 3339 time for JSON.
pub fn time(t: SystemTime) -> String {
    ca_core::revocation::rfc3339(t)
}

/// Starts ACME for `state`: the service, the validation worker (which takes over challenges
/// a stopped process left processing) and the nonce ledger.
///
/// Fails if the secret cannot be read, the settings are invalid, the resolver cannot be
/// found or the worker cannot start.
pub fn start(
    state: &AppState,
    data_dir: &std::path::Path,
    config: &crate::config::AcmeConfig,
) -> anyhow::Result<Arc<Acme>> {
    let secret = Arc::new(crate::wiring::acme_secret(
        data_dir,
        config.secret_file.as_deref(),
    )?);
    let settings = crate::wiring::acme_settings(config)?;
    if let Some(p) = &settings.default_profile
        && !state.ca.profiles().iter().any(|q| q.name == *p && q.acme())
    {
        anyhow::bail!("[acme] default_profile {p:?} is not a profile with acme = true");
    }
    let db = state.probes.db.clone();
    let service = Arc::new(AcmeService::new(
        state.ca.clone(),
        db.clone(),
        state.certs.clone(),
        state.publisher.clone(),
        secret,
        settings,
    ));
    let validator = validate::Validator {
        http01_port: config.http01_port,
        tls_alpn01_port: config.tls_alpn01_port,
        resolver: dns::resolver(config.dns_resolver.as_deref())
            .map_err(|e| anyhow::anyhow!("[acme] dns_resolver: {e}"))?,
    };
    // The worker also takes over challenges a stopped process left processing.
    let queue = validate::start(service.clone(), db.clone(), validator)?;
    Ok(Arc::new(Acme {
        service,
        nonces: db,
        queue,
    }))
}
