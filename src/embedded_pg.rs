//! A private PostgreSQL started from the machine's server binaries: the
//! default run's database (persistent data directory) and the test harness's
//! throwaway server.
//!
//! `initdb` and `postgres` refuse to run as root, so when we are root the
//! server runs as `nobody` (the child's uid/gid are set before exec) and its
//! data directory is handed to that user.
//!
//! Nothing local is trusted: the server listens on loopback TCP only (no Unix
//! socket) and requires the `postgres` role's password (scram-sha-256), a
//! generated secret kept 0600 in the data directory ([`PASSWORD_FILE`]). A
//! data directory from before (initdb `--auth=trust`) is upgraded in place on
//! its next start: the password is set in single-user mode, before the server
//! listens at all, then `pg_hba.conf` is replaced.
//!
//! [`PostgresThread`] hosts one in a thread of its own (scratch and test
//! servers).

mod thread;

pub use thread::PostgresThread;

use std::{
    fs,
    net::{SocketAddr, TcpStream},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::{
        prctl,
        signal::{self, Signal},
    },
    unistd::{self, Pid, User},
};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "postgresql server binaries not found (looked in {searched}); install them (debian: apt-get install postgresql-15) or set BOOKINGD_PG_BIN_DIR"
    )]
    BinariesMissing { searched: String },
    #[error("data directory {path} is not usable by the postgres user {user}: {reason}")]
    DataDirUnusable { path: String, user: String, reason: String },
    #[error("initdb failed (exit {status}): {output}")]
    InitDb { status: String, output: String },
    #[error("postgres port {0} is already in use; choose another with BOOKINGD_PG_PORT")]
    PortTaken(u16),
    #[error("postgres did not become ready within {waited:?}; see {log}")]
    NotReady { waited: Duration, log: String },
    #[error("postgres exited during startup ({status}); see {log}")]
    Exited { status: String, log: String },
    #[error(
        "{path} is missing but the server already requires a password; restore the file, or reset the postgres \
         role's password in single-user mode and write it there"
    )]
    PasswordMissing { path: String },
    #[error("setting the postgres password in single-user mode failed: {output}")]
    SetPassword { output: String },
    #[error("io error while {action}: {source}")]
    Io { action: String, source: std::io::Error },
}

fn io(action: &str) -> impl FnOnce(std::io::Error) -> EmbeddedPgError + '_ {
    move |source| EmbeddedPgError::Io { action: action.to_owned(), source }
}

#[derive(Debug, Clone)]
pub struct EmbeddedPgOptions {
    pub data_dir: PathBuf,
    pub port: u16,
    /// `None`: the newest `/usr/lib/postgresql/*/bin`.
    pub bin_dir: Option<PathBuf>,
    /// Throwaway servers trade durability for speed (fsync off).
    pub ephemeral: bool,
    pub max_connections: u32,
}

/// Where the server runs as: ourselves, or `nobody` when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// The generated password of the `postgres` role, in the data directory.
pub const PASSWORD_FILE: &str = "bookingd-postgres-password";

/// Password over loopback TCP for everyone; nothing else (there is no socket).
const PASSWORD_HBA: &str = "# written by bookingd: the postgres role's password (scram-sha-256), loopback TCP only
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
";

pub struct EmbeddedPostgres {
    options: EmbeddedPgOptions,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    child: Option<Child>,
    password: String,
}

impl EmbeddedPostgres {
    /// Starts the server (running `initdb` first when the data directory is
    /// new) and waits until it accepts connections.
    ///
    /// The server gets SIGQUIT when the *thread* that calls this exits (Linux
    /// parent-death signal), so call it from a thread that lives as long as
    /// the server should: the main thread, or a dedicated one.
    pub fn start(mut options: EmbeddedPgOptions) -> Result<Self, EmbeddedPgError> {
        // absolute, because the child processes run with the data directory as
        // their working directory
        fs::create_dir_all(&options.data_dir).map_err(io("creating the data directory"))?;
        options.data_dir = options.data_dir.canonicalize().map_err(io("resolving the data directory"))?;
        let bin_dir = match &options.bin_dir {
            Some(dir) if dir.join("postgres").exists() => dir.clone(),
            Some(dir) => {
                return Err(EmbeddedPgError::BinariesMissing { searched: dir.display().to_string() });
            }
            None => find_bin_dir()?,
        };
        let run_as = run_as_for_current_user();
        let mut server = EmbeddedPostgres { options, bin_dir, run_as, child: None, password: String::new() };
        server.prepare_data_dir()?;
        if !server.options.data_dir.join("PG_VERSION").exists() {
            server.initdb()?;
        }
        server.password = server.require_password()?;
        server.spawn()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.options.port
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.options.data_dir
    }

    /// URL of a database on this server (with the password).
    pub fn url(&self, database: &str) -> String {
        url_for(self.options.port, &self.password, database)
    }

    /// Fast shutdown (SIGINT: disconnect clients, checkpoint, exit), then
    /// SIGKILL if it has not exited within the deadline.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id();
        // our own child, not yet reaped: the pid cannot have been reused
        let _ = signal::kill(Pid::from_raw(pid as i32), Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(pid, "postgres did not stop within 30s, killing it");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port.
    pub fn restart(&mut self) -> Result<(), EmbeddedPgError> {
        self.stop();
        self.spawn()
    }

    fn log_path(&self) -> PathBuf {
        self.options.data_dir.join("postgres.log")
    }

    fn user_name(&self) -> String {
        match self.run_as {
            Some(_) => "nobody".to_owned(),
            None => std::env::var("USER").unwrap_or_else(|_| "current user".to_owned()),
        }
    }

    fn prepare_data_dir(&self) -> Result<(), EmbeddedPgError> {
        let dir = &self.options.data_dir;
        let unusable = |reason: String| EmbeddedPgError::DataDirUnusable {
            path: dir.display().to_string(),
            user: self.user_name(),
            reason,
        };
        if let Some(run_as) = self.run_as {
            std::os::unix::fs::chown(dir, Some(run_as.uid), Some(run_as.gid))
                .map_err(|e| unusable(format!("chown failed: {e}")))?;
            // every ancestor must be traversable by the unprivileged user
            for ancestor in dir.ancestors().skip(1) {
                let mode = fs::metadata(ancestor).map_err(io("reading a parent directory"))?.permissions().mode();
                if mode & 0o001 == 0 {
                    return Err(unusable(format!(
                        "{} is not traversable by others; choose a data directory outside it (BOOKINGD_DATA_DIR)",
                        ancestor.display()
                    )));
                }
            }
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io("setting data directory permissions"))?;
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        if let Some(run_as) = self.run_as {
            command.uid(run_as.uid).gid(run_as.gid);
            // nobody has no home; keep the child from looking in ours
            command.env("HOME", &self.options.data_dir);
        }
        command.current_dir(&self.options.data_dir);
        command
    }

    fn initdb(&self) -> Result<(), EmbeddedPgError> {
        let mut command = self.command("initdb");
        command.arg("-D").arg(&self.options.data_dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]);
        if self.options.ephemeral {
            command.arg("--no-sync");
        }
        let output = command.output().map_err(io("running initdb"))?;
        if !output.status.success() {
            return Err(EmbeddedPgError::InitDb {
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    /// The `postgres` role's password, after making sure the server requires
    /// it: an existing password data directory keeps its secret; a new or a
    /// trust one gets a password set (single-user mode: no connection is
    /// possible meanwhile) and the password-only `pg_hba.conf`.
    fn require_password(&self) -> Result<String, EmbeddedPgError> {
        let dir = &self.options.data_dir;
        let password_path = dir.join(PASSWORD_FILE);
        let hba_path = dir.join("pg_hba.conf");
        let hba = fs::read_to_string(&hba_path).map_err(io("reading pg_hba.conf"))?;
        let saved = match crate::auth::token::read_token_file(&password_path) {
            Ok(password) => Some(password),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(EmbeddedPgError::Io { action: "reading the postgres password".into(), source: error });
            }
        };
        if hba == PASSWORD_HBA {
            return saved.ok_or_else(|| EmbeddedPgError::PasswordMissing { path: password_path.display().to_string() });
        }
        let upgrading = dir.join("postmaster.opts").exists();
        let password = match saved {
            Some(password) => password,
            None => {
                let (_, _) = crate::auth::token::ensure_token_file(dir, PASSWORD_FILE)
                    .map_err(io("writing the postgres password file"))?;
                crate::auth::token::read_token_file(&password_path).map_err(io("reading the postgres password"))?
            }
        };
        self.single_user(&format!("alter role postgres with password '{password}'"))?;
        let temporary = dir.join("pg_hba.conf.bookingd");
        fs::write(&temporary, PASSWORD_HBA).map_err(io("writing pg_hba.conf"))?;
        fs::set_permissions(&temporary, fs::Permissions::from_mode(0o600)).map_err(io("writing pg_hba.conf"))?;
        if let Some(run_as) = self.run_as {
            std::os::unix::fs::chown(&temporary, Some(run_as.uid), Some(run_as.gid))
                .map_err(io("writing pg_hba.conf"))?;
        }
        fs::rename(&temporary, &hba_path).map_err(io("replacing pg_hba.conf"))?;
        if upgrading {
            tracing::info!(data_dir = %dir.display(), password_file = %password_path.display(),
                "embedded postgresql upgraded from trust: it now requires the generated password (scram-sha-256)");
        }
        Ok(password)
    }

    /// Runs one statement in single-user mode (the server must be stopped).
    /// The statement goes through stdin, never the command line.
    fn single_user(&self, statement: &str) -> Result<(), EmbeddedPgError> {
        use std::io::Write;
        let mut command = self.command("postgres");
        command
            .args(["--single", "-D"])
            .arg(&self.options.data_dir)
            .args(["-c", "unix_socket_directories=", "-c", "password_encryption=scram-sha-256", "postgres"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(io("starting postgres in single-user mode"))?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{statement}").map_err(io("talking to postgres in single-user mode"))?;
        }
        let output = child.wait_with_output().map_err(io("running postgres in single-user mode"))?;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if !output.status.success() || text.contains("ERROR") || text.contains("FATAL") {
            // the statement holds the password: report postgres' lines without it
            let output = text.lines().filter(|line| !line.contains("password '")).collect::<Vec<_>>().join(" / ");
            return Err(EmbeddedPgError::SetPassword { output });
        }
        Ok(())
    }

    fn spawn(&mut self) -> Result<(), EmbeddedPgError> {
        let port = self.options.port;
        if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok() {
            return Err(EmbeddedPgError::PortTaken(port));
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io("opening the postgres log"))?;
        let log_err = log.try_clone().map_err(io("opening the postgres log"))?;
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(&self.options.data_dir)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
            // no unix socket: /var/run/postgresql is not ours to write
            .args(["-c", "unix_socket_directories="])
            .args(["-c", &format!("max_connections={}", self.options.max_connections)]);
        if self.options.ephemeral {
            command.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        }
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        // SAFETY: the closure only calls prctl (async-signal-safe, no
        // allocation): it sets this child's parent-death signal so a crashed
        // parent leaves no server behind.
        unsafe {
            command.pre_exec(|| {
                prctl::set_pdeathsig(Signal::SIGQUIT)?;
                Ok(())
            });
        }
        let child = command.spawn().map_err(io("starting postgres"))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60))
    }

    /// The port opens before the server accepts sessions, so readiness is
    /// `pg_isready`, retried until the deadline.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), EmbeddedPgError> {
        let deadline = Instant::now() + timeout;
        let log = self.log_path().display().to_string();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(EmbeddedPgError::Exited { status: status.to_string(), log });
            }
            let ready = Command::new(self.bin_dir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.options.port.to_string(), "-U", "postgres"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EmbeddedPgError::NotReady { waited: timeout, log });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has a server.
pub fn find_bin_dir() -> Result<PathBuf, EmbeddedPgError> {
    let root = Path::new("/usr/lib/postgresql");
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.split('.').next()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| EmbeddedPgError::BinariesMissing { searched: "/usr/lib/postgresql/*/bin".to_owned() })
}

fn run_as_for_current_user() -> Option<RunAs> {
    if !unistd::geteuid().is_root() {
        return None;
    }
    // 65534 is nobody on every distribution we know, for a system without a
    // passwd entry
    match User::from_name("nobody") {
        Ok(Some(nobody)) => Some(RunAs { uid: nobody.uid.as_raw(), gid: nobody.gid.as_raw() }),
        _ => Some(RunAs { uid: 65534, gid: 65534 }),
    }
}

/// URL of a database on the server at `port` (superuser `postgres` with its
/// password, loopback only). The password is hex: nothing to escape.
fn url_for(port: u16, password: &str, database: &str) -> String {
    format!("postgres://postgres:{password}@127.0.0.1:{port}/{database}")
}

/// A free loopback port, for servers whose port we choose.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
