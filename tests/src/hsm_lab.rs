//! Two HSMs without hardware, for the fault tests and the failover benchmark.
//!
//! Each "HSM" is a SoftHSM2 token directory; two directories holding the same keys (one
//! copied from the other after the keys were generated) are two HSMs of a cluster. One is
//! reached over a unix socket through `p11-kit-server` and Debian's `p11-kit-client.so` (a
//! network HSM: it can die, SIGKILL, or hang, SIGSTOP), the other in-process through
//! SoftHSM2's own module (its token directory can be moved away and back).
//!
//! Why not two p11-kit servers in one process: the client module takes its server from
//! `P11_KIT_SERVER_ADDRESS` when loaded, so two members need two copies of it, each reading
//! a variable of its own name. That works for one copy, but with two copies of p11-kit 0.24.1
//! loaded in one process, using the second makes the first crash (SIGSEGV in its message
//! printer) on its next call. p11-kit's proxy with `remote:` entries would put both servers
//! behind one module, and re-initialising one member would cut off the other.
//!
//! `p11-kit-server` forks a `p11-kit-remote` per connection, so a server is started in a
//! process group of its own and faults are sent to the whole group.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// `p11-kit-server`, from Debian's `p11-kit` package.
pub const SERVER: &str = "/usr/libexec/p11-kit/p11-kit-server";
/// SoftHSM2's module, behind every server.
pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The token label on every member.
pub const TOKEN: &str = "keyhold";
/// The user PIN of every lab token.
pub const USER_PIN: &str = "1234";
const SO_PIN: &str = "12345678";
/// The label of the CA key the lab generates.
pub const KEY: &str = "issuing-ca";
/// The client module from `p11-kit-modules`, wherever the architecture put it.
pub fn client_module() -> Option<PathBuf> {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ];
    dirs.iter()
        .map(|d| Path::new(d).join("pkcs11/p11-kit-client.so"))
        .find(|p| p.exists())
}

/// What is missing to run the lab, if anything.
pub fn missing_tools() -> Vec<String> {
    let mut missing = Vec::new();
    for (path, package) in [(SERVER, "p11-kit"), (SOFTHSM, "softhsm2")] {
        if !Path::new(path).exists() {
            missing.push(format!("{path} (package {package})"));
        }
    }
    if client_module().is_none() {
        missing.push("p11-kit-client.so (package p11-kit-modules)".into());
    }
    for tool in ["softhsm2-util", "pkcs11-tool"] {
        let found = Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            missing.push(format!(
                "{tool} (package {})",
                if tool == "pkcs11-tool" {
                    "opensc"
                } else {
                    "softhsm2"
                }
            ));
        }
    }
    missing
}

/// The environment variable p11-kit's client module reads its server address from.
pub const ADDRESS_VAR: &str = "P11_KIT_SERVER_ADDRESS";

/// A directory of token directories and sockets.
#[derive(Debug)]
pub struct Lab {
    dir: PathBuf,
}

impl Lab {
    /// A lab in `dir` (which must exist and be empty; the caller removes it).
    pub fn new(dir: &Path) -> Self {
        Lab {
            dir: dir.to_path_buf(),
        }
    }

    /// SoftHSM2's config for HSM `name`.
    pub fn conf(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("softhsm2.conf")
    }

    /// HSM `name`'s token directory.
    pub fn tokens(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("tokens")
    }

    /// HSM `name`'s socket.
    pub fn socket(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sock"))
    }

    /// The address member `name` is served on, as p11-kit's client reads it.
    pub fn address(&self, name: &str) -> String {
        format!("unix:path={}", self.socket(name).display())
    }

    fn softhsm(&self, name: &str, program: &str, args: &[&str]) -> Result<()> {
        let out = Command::new(program)
            .args(args)
            .env("SOFTHSM2_CONF", self.conf(name))
            .output()
            .with_context(|| format!("running {program}"))?;
        if !out.status.success() {
            bail!(
                "{program} {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A new HSM `name`: a token directory with an initialised token labelled [`TOKEN`].
    pub fn init(&self, name: &str) -> Result<()> {
        std::fs::create_dir_all(self.tokens(name))?;
        std::fs::write(
            self.conf(name),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                self.tokens(name).display()
            ),
        )?;
        self.softhsm(
            name,
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--so-pin",
                SO_PIN,
                "--pin",
                USER_PIN,
            ],
        )
    }

    /// Generates a P-384 key pair labelled [`KEY`] in HSM `name` with `pkcs11-tool`.
    pub fn generate(&self, name: &str) -> Result<()> {
        self.softhsm(
            name,
            "pkcs11-tool",
            &[
                "--module",
                SOFTHSM,
                "--token-label",
                TOKEN,
                "--login",
                "--pin",
                USER_PIN,
                "--keypairgen",
                "--key-type",
                "EC:secp384r1",
                "--label",
                KEY,
                "--id",
                "01",
            ],
        )
    }

    /// HSM `to` as a replica of `from`: the same token and keys (what cluster sync does).
    pub fn replicate(&self, from: &str, to: &str) -> Result<()> {
        std::fs::create_dir_all(self.dir.join(to))?;
        let status = Command::new("cp")
            .arg("-a")
            .arg(self.tokens(from))
            .arg(self.tokens(to))
            .status()?;
        if !status.success() {
            bail!("cp -a {} failed", self.tokens(from).display());
        }
        std::fs::write(
            self.conf(to),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                self.tokens(to).display()
            ),
        )?;
        Ok(())
    }

    /// Starts HSM `name`'s server and waits for its socket.
    pub fn serve(&self, name: &str) -> Result<Server> {
        let socket = self.socket(name);
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(SERVER)
            // -t: a server outlives its test only briefly if the test process crashes
            // (Drop does not run then): it exits after 120 s without connections.
            .args(["-f", "-q", "-t", "120", "--provider", SOFTHSM, "-n"])
            .arg(&socket)
            .arg(format!("pkcs11:token={TOKEN}"))
            .env("SOFTHSM2_CONF", self.conf(name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {SERVER}"))?;
        let server = Server {
            child,
            killed: false,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!(
                    "p11-kit-server for {name} did not create {}",
                    socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }
}

/// A running `p11-kit-server` and the `p11-kit-remote` children it forked (one group).
#[derive(Debug)]
pub struct Server {
    child: Child,
    killed: bool,
}

impl Server {
    fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .status()?;
        if !status.success() {
            bail!("kill {signal} of server group {} failed", self.child.id());
        }
        Ok(())
    }

    /// The HSM dies: SIGKILL to the server and every connection it serves.
    pub fn kill(&mut self) -> Result<()> {
        if !self.killed {
            self.signal("-KILL")?;
            let _ = self.child.wait();
            self.killed = true;
        }
        Ok(())
    }

    /// The HSM hangs: SIGSTOP to the server and its connections.
    pub fn stop(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// The hung HSM resumes.
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.killed {
            let _ = self.resume();
            let _ = self.kill();
        }
    }
}

/// One signature of a load run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it started, from the start of the run.
    pub at: Duration,
    /// How long it took.
    pub latency: Duration,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// Signs with `signer` from `threads` threads until `stop` is set; every signature is
/// verified with the signer's public key (a wrong signature counts as a failure).
pub fn load(
    signer: std::sync::Arc<dyn ca_core::keystore::Signer>,
    threads: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let start = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let signer = std::sync::Arc::clone(&signer);
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut samples = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let message = format!("tbs {t} {n}");
                        let began = Instant::now();
                        let result = signer.sign(message.as_bytes()).and_then(|sig| {
                            ca_core::keystore::verify(
                                signer.algorithm(),
                                signer.public_key(),
                                message.as_bytes(),
                                &sig,
                            )
                        });
                        samples.push(Sample {
                            at: began - start,
                            latency: began.elapsed(),
                            error: result.err().map(|e| e.to_string()),
                        });
                        if samples.last().is_some_and(|s| s.error.is_some()) {
                            // A failing store answers fast; do not spin.
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    samples
                })
            })
            .collect();
        let mut all: Vec<Sample> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|s| s.at);
        all
    })
}

/// Waits up to `within` for `check` to hold; returns how long it took.
pub fn wait_for(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
