//! Child processes that never outlive the test: own process group, killed on drop, and (through
//! `setpriv --pdeathsig KILL`, when present) killed by the kernel if the test process dies first.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long a server may take to become ready. Generous: CI machines have 2 cores and may be
/// compiling at the same time.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of a server's log shown when it fails.
const LOG_TAIL_LINES: usize = 40;

/// The workspace root (this crate lives in `<root>/libs/testbed`).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// `$ORGANISM_TOOLS`, default `<workspace root>/target/tools` (where `ci/install-test-deps.sh`
/// installs).
pub(crate) fn tools_dir() -> PathBuf {
    std::env::var_os("ORGANISM_TOOLS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("tools"))
}

/// Panics with the one message every missing tool gets.
pub(crate) fn missing(what: &str) -> ! {
    panic!("{what} not found: run `bash ci/install-test-deps.sh` (cargo xtask test does)")
}

/// `name` in `$ORGANISM_TOOLS/bin` or on `PATH`.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let tools_bin = tools_dir().join("bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(tools_bin)
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Like [`find_program`], panicking with the install hint when absent.
pub(crate) fn require_program(name: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| missing(name))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// An OS user to run a server as (PostgreSQL refuses to run as root).
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl RunAs {
    /// Looks `name` up in `/etc/passwd`.
    pub(crate) fn lookup(name: &str) -> Option<Self> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != name {
                return None;
            }
            Some(RunAs {
                name: name.to_owned(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
            })
        })
    }
}

/// The effective uid of this process, read from the owner of a file it creates.
pub(crate) fn effective_uid(dir: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    let probe = dir.join(".uid-probe");
    File::create(&probe).expect("create a file in the temp dir");
    let uid = probe.metadata().expect("stat the probe file").uid();
    let _ = std::fs::remove_file(&probe);
    uid
}

/// A command for `program`, run as `run_as` when given, and with the kernel's parent-death
/// signal set when `pdeathsig` (so it dies with the thread that spawned it).
pub(crate) fn command(
    program: &Path,
    args: &[OsString],
    run_as: Option<&RunAs>,
    pdeathsig: bool,
) -> Command {
    let setpriv = find_program("setpriv");
    match (setpriv, run_as) {
        (Some(setpriv), run_as) if pdeathsig || run_as.is_some() => {
            let mut cmd = Command::new(setpriv);
            if let Some(user) = run_as {
                cmd.arg(format!("--reuid={}", user.uid))
                    .arg(format!("--regid={}", user.gid))
                    .arg("--init-groups");
            }
            if pdeathsig {
                cmd.arg("--pdeathsig=KILL");
            }
            cmd.arg("--").arg(program).args(args);
            cmd
        }
        (None, Some(user)) => {
            let mut cmd = Command::new(require_program("runuser"));
            cmd.arg("-u")
                .arg(&user.name)
                .arg("--")
                .arg(program)
                .args(args);
            cmd
        }
        _ => {
            let mut cmd = Command::new(program);
            cmd.args(args);
            cmd
        }
    }
}

/// Runs a short command to completion, panicking with its output when it fails.
pub(crate) async fn run_to_completion(what: &str, cmd: Command) -> String {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(READY_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {READY_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what} could not be started: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{text}",
        output.status
    );
    text
}

/// A long-running server: its own process group, stdout and stderr appended to `log`.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// Length of the log when this process started: what it wrote comes after.
    log_offset: u64,
}

impl ServerProcess {
    /// Spawns `cmd` (see [`command`]) with output to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let log_offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = file.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name} could not be started ({cmd:?}): {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_path_buf(),
            log_offset,
        }
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exited().is_none()
    }

    /// The last lines of the log.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Waits until `ready()` holds, the process exits, or [`READY_TIMEOUT`] passes.
    pub(crate) async fn wait_ready<F, Fut>(&mut self, mut ready: F) -> Result<(), NotReady>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(NotReady::Exited(status));
            }
            if ready().await {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(NotReady::TimedOut);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the log says the port was taken (another process grabbed the free port first).
    pub(crate) fn lost_port_race(&self) -> bool {
        let Ok(bytes) = std::fs::read(&self.log) else {
            return false;
        };
        let start = usize::try_from(self.log_offset).map_or(0, |o| o.min(bytes.len()));
        String::from_utf8_lossy(&bytes[start..])
            .to_lowercase()
            .contains("address already in use")
    }

    /// Panics with the reason and the log tail.
    pub(crate) fn fail(&mut self, why: NotReady) -> ! {
        let what = match why {
            NotReady::Exited(status) => format!("exited ({status}) before it was ready"),
            NotReady::TimedOut => format!("was not ready within {READY_TIMEOUT:?}"),
        };
        let tail = self.log_tail();
        self.kill();
        panic!(
            "{} {what}; last lines of {}:\n{tail}",
            self.name,
            self.log.display()
        );
    }

    /// Kills the process group and reaps the process.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                kill_group(child.id());
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A temp dir `testbed-<name>-…` for one server's config, data and log.
pub(crate) fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("testbed-{name}-"))
        .tempdir()
        .expect("create a temp dir")
}

/// Starts a server on a free port: `launch(port)` spawns it and waits until it is ready. A start
/// that lost the race for the port (another process took it between [`free_port`] and the bind)
/// is tried again on another port, three times at most; any other failure panics with the log
/// tail.
pub(crate) async fn start_on_free_port<F, Fut>(mut launch: F) -> (ServerProcess, u16)
where
    F: FnMut(u16) -> Fut,
    Fut: Future<Output = (ServerProcess, Result<(), NotReady>)>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port();
        let (mut process, ready) = launch(port).await;
        match ready {
            Ok(()) => return (process, port),
            Err(NotReady::Exited(_)) if attempt < 3 && process.lost_port_race() => {}
            Err(why) => process.fail(why),
        }
    }
}

/// Keeps a (re)launched server in `slot`, panicking with its log tail when it did not become
/// ready.
pub(crate) fn keep_ready(
    slot: &mut Option<ServerProcess>,
    (process, ready): (ServerProcess, Result<(), NotReady>),
) {
    let process = slot.insert(process);
    if let Err(why) = ready {
        process.fail(why);
    }
}

/// A Prometheus-family server (Prometheus, Alertmanager: `/-/ready`, `/-/reload`) in its own
/// temp dir on a free port of 127.0.0.1, killed on drop.
#[derive(Debug)]
pub(crate) struct ReadyServer {
    process: ServerProcess,
    port: u16,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl ReadyServer {
    /// Starts `program` with `arguments(dir, port)` (dying with this thread), output to
    /// `<dir>/<name>.log`, and waits until `GET /-/ready` is 2xx.
    pub(crate) async fn start(
        name: &str,
        program: &str,
        dir: tempfile::TempDir,
        mut arguments: impl FnMut(&Path, u16) -> Vec<OsString>,
    ) -> Self {
        let binary = require_program(program);
        let client = http_client();
        let (binary, client_ref, dir_path) = (&binary, &client, dir.path());
        let (process, port) = start_on_free_port(move |port| {
            let cmd = command(binary, &arguments(dir_path, port), None, true);
            let mut process =
                ServerProcess::spawn(name, cmd, &dir_path.join(format!("{name}.log")));
            async move {
                let ready_url = format!("http://127.0.0.1:{port}/-/ready");
                let ready = process.wait_ready(|| http_ok(client_ref, &ready_url)).await;
                (process, ready)
            }
        })
        .await;
        Self {
            process,
            port,
            client,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client testbed talks to the server with.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// `POST /-/reload`, panicking with the log tail when it is refused.
    pub(crate) async fn reload(&self) {
        let url = format!("{}/-/reload", self.url());
        let response = self
            .client
            .post(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "POST {url}: {status}: {body}\n{}",
            self.log_tail()
        );
    }
}

/// Why a server did not become ready.
#[derive(Debug)]
pub(crate) enum NotReady {
    Exited(ExitStatus),
    TimedOut,
}

/// SIGKILL to the process group led by `pid` (spawned with `process_group(0)`).
fn kill_group(pid: u32) {
    let kill = find_program("kill").unwrap_or_else(|| PathBuf::from("/bin/kill"));
    let _ = Command::new(kill)
        .args([OsStr::new("-KILL"), OsStr::new("--")])
        .arg(format!("-{pid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last [`LOG_TAIL_LINES`] lines of a log file.
pub(crate) fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            lines[start..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

/// Arguments as `OsString`s.
pub(crate) fn args<I, S>(items: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    items.into_iter().map(Into::into).collect()
}

/// The plain client tests (and testbed itself) call servers with: bounded, so a wedged server
/// fails the test with a message instead of hanging it (not `telemetry::client`: these calls are
/// test plumbing, not a service's traced outbound traffic).
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .build()
        .expect("a reqwest client with timeouts")
}

/// [`http_client`]'s builder, for a test that sets more (its own timeouts, no pooling): the
/// process's crypto provider is installed first, which reqwest needs before it builds a client.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    crypto_provider::install();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
}

/// GET `url` and report whether it answered 2xx within a second.
pub(crate) async fn http_ok(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
