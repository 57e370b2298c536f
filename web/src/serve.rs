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

use actix_web::{App, HttpServer, web};
use anyhow::{Context, Result, anyhow};
use ca_core::issuance::Ca;
use ca_core::issuer;
use ca_core::store::Store;

use crate::cli::{Cli, InitArgs, KeyStoreKind, open_store};
use crate::config::{CONFIG_FILE, Config};
use crate::init::DEMO_PASSPHRASE_FILE;
use crate::secrets::PASSPHRASE_ENV;
use crate::state::AppState;

/// `keyhold serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The config file (default: keyhold.toml in --data-dir). Relative paths in it are
    /// relative to --data-dir.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Loads everything the server needs, checking it all.
///
/// Fails listing every problem with the config, key store, issuers, profiles or database.
pub fn load_state(cli: &Cli, config_file: Option<&std::path::Path>) -> Result<AppState> {
    let path = config_file.map_or_else(|| cli.data_dir.join(CONFIG_FILE), PathBuf::from);
    let config = match config_file {
        None => Config::load(&cli.data_dir)?,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config {}", p.display()))?;
            Config::parse(&text).with_context(|| format!("invalid config {}", p.display()))?
        }
    };
    let keys = open_store(cli, &config)?;
    let mut problems = Vec::new();
    let issuers =
        issuer::load_all(&config.issuers, &cli.data_dir, keys.as_ref()).unwrap_or_else(|p| {
            problems.extend(p);
            Vec::new()
        });
    let profiles = ca_core::policy::load_dir(&cli.policies).unwrap_or_else(|e| {
        problems.push(e.to_string());
        Vec::new()
    });
    let db = Arc::new(
        db::Db::open(&config.database_url(&cli.data_dir)).context("cannot open the database")?,
    );
    if !problems.is_empty() {
        return Err(anyhow!(
            "the CA cannot start ({}):\n  - {}",
            path.display(),
            problems.join("\n  - ")
        ));
    }
    // Every CA and responder signature is timed for /metrics, by key store.
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let backend = match config.keystore {
        ca_core::keystore::KeyStoreConfig::Embedded { .. } => "embedded",
        ca_core::keystore::KeyStoreConfig::Pkcs11 { .. } => "pkcs11",
    };
    let timed = |signer: &Arc<dyn ca_core::keystore::Signer>| {
        crate::metrics::TimedSigner::wrap(signer.clone(), backend, metrics.clone())
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
    AppState::new(Arc::new(ca), db, keys, metrics, times)
}

/// Runs `keyhold serve`.
///
/// Fails if start-up finds a problem or the address cannot be bound.
pub fn run(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
    init_tracing();
    if args.config.is_none() && !cli.data_dir.join(CONFIG_FILE).exists() {
        init_demo(cli, args)?;
    }
    let state = load_state(cli, args.config.as_deref())?;
    let closed = state
        .ca
        .recover(SystemTime::now())
        .context("cannot close the reservations left by an interrupted process")?;
    if closed > 0 {
        tracing::warn!(closed, "closed serials reserved by an interrupted process");
    }
    let demo = cli.passphrase_file.is_none()
        && std::env::var_os(PASSPHRASE_ENV).is_none()
        && Config::load(&cli.data_dir)
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
    crate::ui::bootstrap::ensure_admin(&state)?;
    let data = web::Data::new(state);
    let app_data = data.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_data.clone())
            .configure(crate::configure)
    })
    .shutdown_timeout(30);
    if let Some(n) = args.workers {
        server = server.workers(n.max(1));
    }
    let server = server
        .bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    for addr in server.addrs() {
        println!("listening on http://{addr}/ (API under /api/v1, CA certificates under /ca/)");
        tracing::info!(%addr, "listening");
    }
    println!(
        "first API token: keyhold --data-dir {} tokens create --name admin --role admin",
        cli.data_dir.display()
    );
    // Stdout may be a pipe (tests, supervisors): make the lines above visible now.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // actix stops on SIGINT/SIGTERM, letting in-flight requests finish (30 s at most).
    actix_web::rt::System::new()
        .block_on(server.run())
        .context("the HTTP server failed")?;
    // The workers are gone; dropping the last state handle stops the database writer
    // after its queued writes have committed.
    drop(data);
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn init_demo(cli: &Cli, args: &ServeArgs) -> Result<()> {
    let given = cli.passphrase_file.is_some() || std::env::var_os(PASSPHRASE_ENV).is_some();
    let host = if args.listen.ip().is_unspecified() {
        format!("127.0.0.1:{}", args.listen.port())
    } else {
        args.listen.to_string()
    };
    println!(
        "{} holds no CA: initialising one (embedded token, SQLite){}",
        cli.data_dir.display(),
        if given { "" } else { " for a DEMO" }
    );
    crate::cli::run_init(
        cli,
        &InitArgs {
            keystore: KeyStoreKind::Embedded,
            pkcs11_module: PathBuf::new(),
            pkcs11_token: None,
            base_url: Some(format!("http://{host}")),
            ceremony: None,
            key_prefix: None,
            demo: !given,
            database_url: None,
        },
    )
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
