//! `keyhold serve`: start-up checks, then the HTTP server until SIGINT or SIGTERM.
//!
//! Start-up, in order: (1) on a data directory with no CA, a demo CA is initialised first;
//! (2) the config, key store, issuers (each key checked against its certificate), profiles
//! (each against an issuer) and database (migrated to this build's schema) are loaded, every
//! problem reported together; (3) reservations left by a crashed process are closed; (4) the
//! server answers until a signal, finishes in-flight requests, and the database writer is
//! dropped last.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, ResponseError, web};
use anyhow::{Context, Result, anyhow};
use ca_core::issuance::Ca;
use ca_core::issuer;
use ca_core::store::Store;

use crate::config::{CONFIG_FILE, Config};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::init::DEMO_PASSPHRASE_FILE;
use crate::secrets::PASSPHRASE_ENV;
use crate::tls;
use crate::wiring::{Paths, open_store};

/// `keyhold serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The plain HTTP listener: OCSP, CRLs and CA certificates (which must be reachable
    /// without TLS, RFC 5019), health and metrics; the UI and API too only with
    /// --insecure-http-ui.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The HTTPS listener: everything, the UI and API included, with a server certificate
    /// Keyhold issues to itself at start and renews. `none` turns HTTPS off.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR|none", value_parser = parse_tls_listen)]
    pub tls_listen: TlsListen,
    /// Also serve the UI and API on the plain HTTP listener, which must then be a loopback
    /// address (for development, or behind a TLS-terminating proxy on the same host).
    #[arg(long)]
    pub insecure_http_ui: bool,
    /// The profile the HTTPS server certificate is issued under.
    #[arg(long, default_value = crate::tls::DEFAULT_PROFILE, value_name = "NAME")]
    pub tls_profile: String,
    /// The config file (default: keyhold.toml in --data-dir). Relative paths in it are
    /// relative to --data-dir.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// `--tls-listen`: an address, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsListen {
    /// No HTTPS listener.
    Off,
    /// HTTPS on this address.
    On(SocketAddr),
}

fn parse_tls_listen(s: &str) -> Result<TlsListen, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(TlsListen::Off);
    }
    s.parse()
        .map(TlsListen::On)
        .map_err(|_| format!("{s:?} is neither an address such as 127.0.0.1:8443 nor `none`"))
}

/// What the plain HTTP listener serves besides the public routes, and where it sends
/// clients of the UI and API otherwise.
#[derive(Debug, Clone)]
pub struct PlainHttp {
    /// The UI and API are served here too (`--insecure-http-ui`).
    pub ui: bool,
    /// The HTTPS listener, if any.
    pub https: Option<SocketAddr>,
    /// The host name redirects name when the HTTPS listener is bound to every address:
    /// the configured `base_url`'s host, never the client's `Host` header.
    pub host: String,
}

/// Checks the listener flags together before anything starts.
///
/// Fails if `--insecure-http-ui` is given with a `--listen` address that is not loopback,
/// or both listeners name the same address.
pub fn check_listeners(args: &ServeArgs) -> Result<()> {
    if args.insecure_http_ui && !args.listen.ip().is_loopback() {
        return Err(anyhow!(
            "--insecure-http-ui serves the UI and API (passwords, API tokens) without TLS, so \
             it needs a loopback --listen address such as 127.0.0.1:{port}; {} is not \
             loopback. Use the HTTPS listener (--tls-listen) instead",
            args.listen,
            port = args.listen.port()
        ));
    }
    if args.tls_listen == TlsListen::On(args.listen) {
        return Err(anyhow!(
            "--listen and --tls-listen are both {}: give them different ports",
            args.listen
        ));
    }
    Ok(())
}

/// Whether `path` belongs to the UI, the API or ACME.
fn ui_or_api(path: &str) -> bool {
    ["/ui", "/api", "/acme"].iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    })
}

/// On the plain HTTP listener, without `--insecure-http-ui`: the UI and API answer 421
/// Misdirected Request naming the HTTPS URL to use (a browser's GET of the UI is
/// redirected there instead). TLS connections, and every other path, pass.
async fn plain_http_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // The router matches the percent-decoded path (`/%75i/login` is `/ui/login`): gate on
    // that, and on the raw path too.
    let gated = ui_or_api(req.path()) || ui_or_api(req.match_info().as_str());
    if req.app_config().secure() {
        // HTTPS: browsers that saw it once never try plain HTTP for this host again (a
        // year, RFC 6797), so a network attacker cannot downgrade a later visit.
        let mut res = next.call(req).await?;
        res.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000"),
        );
        return Ok(res.map_into_left_body());
    }
    if !gated {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    // serve::run always registers the gate's settings; without them, refuse.
    let gate = req
        .app_data::<web::Data<PlainHttp>>()
        .map(|g| g.get_ref().clone());
    if gate.as_ref().is_some_and(|g| g.ui) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let https = gate.as_ref().and_then(|g| g.https).map(|addr| {
        // The configured host, never the Host header: that could send the browser, and its
        // form posts, anywhere.
        let host = gate.as_ref().map_or_else(String::new, |g| g.host.clone());
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned());
        format!("{}{path}", https_base(&host, addr))
    });
    let is_get = matches!(*req.method(), Method::GET | Method::HEAD);
    let res = match https {
        Some(url) if is_get && req.match_info().as_str().starts_with("/ui") => {
            HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, url))
                .finish()
        }
        Some(url) => ApiError::misdirected(format!(
            "the UI and API are served over HTTPS only: use {url}"
        ))
        .error_response(),
        None => ApiError::misdirected(
            "the UI and API are not served on this plain HTTP listener: start keyhold serve \
             with --tls-listen ADDR (HTTPS), or with --insecure-http-ui on a loopback --listen",
        )
        .error_response(),
    };
    tracing::info!(path = %req.path(), status = res.status().as_u16(), "refused on plain HTTP");
    Ok(req.into_response(res).map_into_right_body())
}

/// `https://host:port` of the HTTPS listener on `addr`, for a client that reached the plain
/// listener as `host` (the Host header): the listener's own address, unless it is bound to
/// every address, when the client's name for this machine is the one to use.
pub fn https_base(host: &str, addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        strip_port(host).to_owned()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("https://{host}:{}", addr.port())
}

/// The host of `base_url` (`https://pki.example:8443/x` -> `pki.example`; IPv6 keeps its
/// brackets); `127.0.0.1` if there is none.
fn base_url_host(base_url: &str) -> String {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = strip_port(authority);
    if host.is_empty() {
        "127.0.0.1".into()
    } else {
        host.to_owned()
    }
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && host[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &host[..i]
        }
        _ => host,
    }
}

/// The config: `config_file` if given, else the data directory's keyhold.toml.
///
/// Fails naming the file if it cannot be read or is invalid.
fn load_config(paths: &Paths, config_file: Option<&std::path::Path>) -> Result<Config> {
    match config_file {
        None => Config::load(&paths.data_dir),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config {}", p.display()))?;
            Config::parse(&text).with_context(|| format!("invalid config {}", p.display()))
        }
    }
}

/// Loads everything the server needs, checking it all.
///
/// Fails listing every problem with the config, key store, issuers, profiles or database.
pub fn load_state(paths: &Paths, config_file: Option<&std::path::Path>) -> Result<AppState> {
    let path = config_file.map_or_else(|| paths.data_dir.join(CONFIG_FILE), PathBuf::from);
    let config = load_config(paths, config_file)?;
    let keys = open_store(paths, &config)?;
    let mut problems = Vec::new();
    let issuers =
        issuer::load_all(&config.issuers, &paths.data_dir, keys.as_ref()).unwrap_or_else(|p| {
            problems.extend(p);
            Vec::new()
        });
    let profiles = ca_core::policy::load_dir(&paths.policies_dir()).unwrap_or_else(|e| {
        problems.push(e.to_string());
        Vec::new()
    });
    let db = Arc::new(
        db::Db::open(&config.database_url(&paths.data_dir)).context("cannot open the database")?,
    );
    if !problems.is_empty() {
        return Err(anyhow!(
            "the CA cannot start ({}):\n  - {}",
            path.display(),
            problems.join("\n  - ")
        ));
    }
    keys.watch_members(Arc::new(crate::wiring::MemberAudit::new(db.clone())));
    // Every CA and responder signature is timed for /metrics, by key store.
    let metrics = Arc::new(crate::http::metrics::Metrics::default());
    let backend = match config.keystore {
        ca_core::keystore::KeyStoreConfig::Embedded { .. } => "embedded",
        ca_core::keystore::KeyStoreConfig::Pkcs11(_) => "pkcs11",
    };
    let timed = |signer: &Arc<dyn ca_core::keystore::Signer>| {
        crate::http::metrics::TimedSigner::wrap(signer.clone(), backend, metrics.clone())
    };
    let issuers: Vec<_> = issuers
        .into_iter()
        .map(|mut i| {
            i.ca.signer = timed(&i.ca.signer);
            if let Some(ocsp) = &mut i.ocsp {
                ocsp.signer = timed(&ocsp.signer);
            }
            i
        })
        .collect();
    let store: Arc<dyn Store> = db.clone();
    let ca = Ca::new(issuers, profiles, store, &config.base_url).map_err(|p| {
        anyhow!(
            "the CA cannot start ({}):\n  - {}",
            path.display(),
            p.join("\n  - ")
        )
    })?;
    let times = config.revocation.times()?;
    let checkpointer = match &config.audit {
        None => None,
        Some(audit) => {
            let key = keys
                .key_from_uri(&audit.key)
                .with_context(|| format!("[audit] key = {:?}", audit.key))?;
            Some(ca_core::audit::Checkpointer {
                signer: keys
                    .signer(&key)
                    .with_context(|| format!("[audit] key = {:?}", audit.key))?,
                key_uri: audit.key.clone(),
                anchor: ca_core::audit::anchor::AnchorFile::in_dir(&paths.data_dir),
                every: audit.checkpoint_every()?,
            })
        }
    };
    let mut state = AppState::new(Arc::new(ca), db, keys, metrics, times)?;
    state.quorum = config.quorum.policy();
    state.checkpointer = checkpointer;
    if let Some(acme) = config.acme.as_ref().filter(|a| a.enabled) {
        state.acme = Some(crate::http::acme::start(&state, &paths.data_dir, acme)?);
    }
    Ok(state)
}

/// Runs `keyhold serve`.
///
/// Fails if start-up finds a problem or the address cannot be bound.
pub fn run(paths: &Paths, args: &ServeArgs) -> Result<ExitCode> {
    init_tracing();
    check_listeners(args)?;
    if args.config.is_none() && !paths.data_dir.join(CONFIG_FILE).exists() {
        init_demo(paths, args)?;
    }
    let mut state = load_state(paths, args.config.as_deref())?;
    let node = join_cluster(&state, &load_config(paths, args.config.as_deref())?)?;
    let closed = state
        .ca
        .recover(SystemTime::now())
        .context("cannot close the reservations left by an interrupted process")?;
    if closed > 0 {
        tracing::warn!(closed, "closed serials reserved by an interrupted process");
    }
    let demo = paths.passphrase_file.is_none()
        && std::env::var_os(PASSPHRASE_ENV).is_none()
        && Config::load(&paths.data_dir)
            .ok()
            .and_then(|c| c.secrets.passphrase_file)
            .is_some_and(|p| p == std::path::Path::new(DEMO_PASSPHRASE_FILE));
    if demo {
        let warning = "DEMO ONLY: the embedded token's passphrase is stored beside its keys; \
                       never use this CA for real certificates";
        tracing::warn!("{warning}");
        println!("WARNING: {warning}");
    }
    for i in state.ca.issuers() {
        println!(
            "CA {:<12} {}  SHA-256 {}",
            i.id,
            i.ca.cert.subject(),
            i.ca.cert.fingerprint_sha256()
        );
    }
    crate::http::ui::bootstrap::ensure_admin(&state)?;
    // The HTTPS certificate, issued before anything listens so a refusal stops start-up.
    let tls = match args.tls_listen {
        TlsListen::Off => None,
        TlsListen::On(addr) => {
            let who = tls::Identity::new(&args.tls_profile, addr.ip(), state.ca.base_url());
            let cert = tls::issue(&state.ca, &who, "startup", SystemTime::now())?;
            let resolver = Arc::new(tls::Resolver::new(&cert));
            let config = tls::server_config(resolver.clone())?;
            let renewer = tls::Renewer::start(state.ca.clone(), resolver, who, &cert)?;
            Some((addr, cert, config, renewer))
        }
    };
    let gate = web::Data::new(PlainHttp {
        ui: args.insecure_http_ui,
        https: tls.as_ref().map(|(addr, ..)| *addr),
        host: base_url_host(state.ca.base_url()),
    });
    let stop_presigner = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heartbeat = spawn_heartbeat(&state, node.clone(), stop_presigner.clone())
        .context("cannot start the node heartbeat")?;
    let search_index = state
        .probes
        .db
        .spawn_search_index_upkeep(stop_presigner.clone())
        .context("cannot start the search index's upkeep")?;
    let ocsp_cache = load_config(paths, args.config.as_deref())?
        .node
        .and_then(|n| n.ocsp_cache)
        .unwrap_or(ca_core::revocation::publish::shared::CACHE_DEFAULT)
        .max(1_000);
    let publication = crate::http::revocation::spawn_shared_publication(
        &state,
        &node,
        ocsp_cache,
        stop_presigner.clone(),
    )
    .context("cannot start the CRL builder")?;
    let presigner = crate::http::revocation::spawn_presigner(
        &state,
        stop_presigner.clone(),
        tracing::info_span!("ocsp-presigner", node = %node.name),
    )
    .context("cannot start the OCSP pre-signer")?;
    let checkpoints = spawn_checkpointer(
        &state,
        stop_presigner.clone(),
        tracing::info_span!("audit-checkpointer", node = %node.name),
    )
    .context("cannot start the audit checkpointer")?;
    let config = load_config(paths, args.config.as_deref())?;
    let backups = match crate::backups::schedule(paths, &config)? {
        Some(plan) => {
            let (status, handle) = crate::backups::spawn_schedule(
                paths.clone(),
                config,
                plan,
                stop_presigner.clone(),
                tracing::info_span!("backups", node = %node.name),
            )?;
            state.backups = Some(status);
            Some(handle)
        }
        None => None,
    };
    let data = web::Data::new(state);
    let app_data = data.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_data.clone())
            .app_data(gate.clone())
            .wrap(from_fn(plain_http_gate))
            .configure(crate::configure)
    })
    // In-flight requests get this long after SIGTERM; with the database down they fail
    // within a second (issue 20), so this bounds only a slow key store.
    .shutdown_timeout(10);
    if let Some(n) = args.workers {
        server = server.workers(n.max(1));
    }
    let mut server = server
        .bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let plain = server.addrs();
    if let Some((addr, _, config, _)) = &tls {
        server = server
            .bind_rustls_0_23(addr, config.clone())
            .with_context(|| format!("cannot listen on {addr} (HTTPS)"))?;
    }
    let https: Vec<SocketAddr> = server
        .addrs()
        .into_iter()
        .filter(|a| !plain.contains(a))
        .collect();
    for addr in &https {
        println!(
            "UI and API: https://{}/ui (API under /api/v1)",
            shown(*addr)
        );
        tracing::info!(%addr, "listening (HTTPS)");
    }
    for addr in &plain {
        if args.insecure_http_ui {
            println!(
                "UI and API without TLS (--insecure-http-ui): http://{}/ui (API under /api/v1)",
                shown(*addr)
            );
        }
        println!(
            "OCSP, CRL, CA certificates: http://{}/ (CA certificates under /ca/)",
            shown(*addr)
        );
        tracing::info!(%addr, "listening (HTTP)");
    }
    match &tls {
        Some((_, cert, ..)) => {
            println!(
                "HTTPS server certificate: serial {} from {}, SHA-256 {}; renewed automatically",
                cert.serial, cert.issuer, cert.fingerprint
            );
            if let (Some(p), Some(h)) = (plain.first(), https.first()) {
                println!(
                    "to trust it, fetch the root: curl -o root.pem http://{}/ca/root.pem; then \
                     curl --cacert root.pem https://{}/healthz",
                    shown(*p),
                    shown(*h)
                );
            }
        }
        None if args.insecure_http_ui => {
            let warning = "HTTPS is off (--tls-listen none): the UI and API are served over \
                           plain HTTP on loopback only";
            tracing::warn!("{warning}");
            println!("WARNING: {warning}");
        }
        None => {
            let warning = "HTTPS is off (--tls-listen none) and --insecure-http-ui is not \
                           given: the UI and API are not served at all";
            tracing::warn!("{warning}");
            println!("WARNING: {warning}");
        }
    }
    println!(
        "first API token: keyhold --data-dir {} tokens create --name admin --role admin",
        paths.data_dir.display()
    );
    // Stdout may be a pipe (tests, supervisors): make the lines above visible now.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // actix stops on SIGINT/SIGTERM, letting in-flight requests finish (10 s at most).
    actix_web::rt::System::new()
        .block_on(server.run())
        .context("the HTTP server failed")?;
    // The workers are gone; then the pre-signer (within a poll interval) and the renewal
    // thread, which hold the CA; dropping the last state handle then stops the database
    // writer after its queued writes have committed.
    stop_presigner.store(true, std::sync::atomic::Ordering::Relaxed);
    if presigner.join().is_err() {
        tracing::error!("the OCSP pre-signer panicked");
    }
    for thread in publication {
        if thread.join().is_err() {
            tracing::error!("the CRL builder or the notice listener panicked");
        }
    }
    if checkpoints.is_some_and(|t| t.join().is_err()) {
        tracing::error!("the audit checkpointer panicked");
    }
    if search_index.is_some_and(|t| t.join().is_err()) {
        tracing::error!("the search index's upkeep panicked");
    }
    if heartbeat.join().is_err() {
        tracing::error!("the node heartbeat panicked");
    }
    if backups.is_some_and(|t| t.join().is_err()) {
        tracing::error!("the backup thread panicked");
    }
    drop(tls);
    drop(data);
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Names this process as a node (`[node] name`, or the host name and process id) and records
/// it in the database, so that its reservations and audit entries say which node made them.
fn join_cluster(state: &AppState, config: &Config) -> Result<ca_core::cluster::NodeId> {
    let configured = config.node.as_ref().and_then(|n| n.name.as_deref());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let node = ca_core::cluster::NodeId::new(configured, host.trim(), SystemTime::now())
        .map_err(|e| anyhow!(e))?;
    state
        .probes
        .db
        .join_cluster(&node)
        .context("cannot record this node in the database")?;
    println!("node {} (instance {})", node.name, node.instance);
    tracing::info!(node = %node.name, instance = %node.instance, "joined");
    Ok(node)
}

/// Records this node's heartbeat every [`ca_core::cluster::HEARTBEAT_EVERY`] (which also
/// notices within a second that the database is down, and that it is back), and every
/// [`ca_core::cluster::SWEEP_EVERY`] closes the reservations of nodes whose heartbeat
/// stopped, until `stop`.
fn spawn_heartbeat(
    state: &AppState,
    node: ca_core::cluster::NodeId,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use ca_core::cluster::{HEARTBEAT_EVERY, SWEEP_EVERY, close_orphans};
    let db = state.probes.db.clone();
    std::thread::Builder::new()
        .name("node-heartbeat".into())
        .spawn(move || {
            let mut last_beat: Option<std::time::Instant> = None;
            let mut last_sweep = std::time::Instant::now();
            let mut failing = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if last_beat.is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY) {
                    last_beat = Some(std::time::Instant::now());
                    match db.heartbeat() {
                        Ok(()) if failing => {
                            failing = false;
                            tracing::info!(node = %node.name, "heartbeat recorded again");
                        }
                        Ok(()) => {}
                        Err(e) if !failing => {
                            failing = true;
                            tracing::error!(node = %node.name, "heartbeat: {e}");
                        }
                        Err(_) => {}
                    }
                }
                if last_sweep.elapsed() >= SWEEP_EVERY && !failing {
                    last_sweep = std::time::Instant::now();
                    match close_orphans(db.as_ref(), db.as_ref(), &node, SystemTime::now()) {
                        Ok(0) => {}
                        Ok(closed) => tracing::warn!(
                            node = %node.name,
                            closed,
                            "closed serials reserved by nodes that stopped"
                        ),
                        Err(e) => {
                            tracing::error!(node = %node.name, "closing orphaned reservations: {e}")
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
}

/// Signs an audit checkpoint every `[audit] checkpoint_every` while entries keep coming
/// (and once at start), logging each one (the log is a second copy outside the database)
/// until `stop`.
fn spawn_checkpointer(
    state: &AppState,
    stop: Arc<std::sync::atomic::AtomicBool>,
    span: tracing::Span,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(checkpointer) = state.checkpointer.clone() else {
        return Ok(None);
    };
    let store = state.audit_log.clone();
    std::thread::Builder::new()
        .name("audit-checkpointer".into())
        .spawn(move || {
            let _span = span.entered();
            let mut last: Option<std::time::Instant> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if last.is_none_or(|t| t.elapsed() >= checkpointer.every) {
                    last = Some(std::time::Instant::now());
                    match checkpointer.tick(store.as_ref(), SystemTime::now()) {
                        Ok(Some(cp)) => tracing::info!(
                            anchor = %ca_core::audit::anchor::AnchorFile::line(&cp),
                            "audit checkpoint signed at entry {}",
                            cp.seq
                        ),
                        Ok(None) => {}
                        Err(e) => tracing::error!("audit checkpoint: {e}"),
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        })
        .map(Some)
}

/// An address as a URL host: unspecified becomes 127.0.0.1 (or ::1), IPv6 gets brackets.
fn shown(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port()).to_string()
}

fn init_demo(paths: &Paths, args: &ServeArgs) -> Result<()> {
    let given = paths.passphrase_file.is_some() || std::env::var_os(PASSPHRASE_ENV).is_some();
    let host = if args.listen.ip().is_unspecified() {
        format!("127.0.0.1:{}", args.listen.port())
    } else {
        args.listen.to_string()
    };
    println!(
        "{} holds no CA: initialising one (embedded token, SQLite){}",
        paths.data_dir.display(),
        if given { "" } else { " for a DEMO" }
    );
    let spec = ca_core::ceremony::CeremonySpec {
        base_url: format!("http://{host}"),
        ..Default::default()
    };
    let outcome = crate::init::run(
        crate::init::InitRequest {
            data_dir: paths.data_dir.clone(),
            spec,
            backend: crate::init::embedded_backend(paths.passphrase_file.as_deref(), !given)?,
            demo: !given,
            database_url: None,
            actor: crate::wiring::os_actor(),
            // One officer to approve with; more are made under its approval (issue 15).
            officers: vec!["officer".into()],
        },
        std::time::SystemTime::now(),
    )?;
    print!("{}", outcome.summary(&paths.data_dir));
    crate::init::print_officers(&outcome);
    Ok(())
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KEYHOLD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only if a subscriber is already set (tests): keep that one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
