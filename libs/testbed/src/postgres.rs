//! A throwaway PostgreSQL cluster (Debian's `/usr/lib/postgresql/<version>/bin`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;

use crate::process::{self, NotReady, RunAs, ServerProcess, args};

const USER: &str = "testbed";
const PASSWORD: &str = "testbed-password";
const DATABASE: &str = "testbed";

/// A PostgreSQL server on `127.0.0.1:PORT` with its data, socket and log in a temp dir, a
/// password user and a database. Stopped (`pg_ctl stop -m immediate`) and removed on drop.
///
/// PostgreSQL refuses to run as root: when the tests run as root, every PostgreSQL command runs
/// as the `postgres` OS user and the temp dir belongs to it.
#[derive(Debug)]
pub struct Postgres {
    process: Option<ServerProcess>,
    port: u16,
    bin: PathBuf,
    run_as: Option<RunAs>,
    dir: TempDir,
}

impl Postgres {
    /// `initdb`, start, wait until it accepts connections, create the database.
    pub async fn start() -> Self {
        let dir = process::temp_dir("postgres");
        let run_as = user_for(dir.path());
        let mut pg = Self {
            process: None,
            port: 0,
            bin: bin_dir(),
            run_as,
            dir,
        };
        pg.init_cluster().await;
        let this = &pg;
        let (process, port) = process::start_on_free_port(move |port| this.launch(port)).await;
        pg.port = port;
        pg.process = Some(process);
        pg.create_database().await;
        pg
    }

    /// `initdb` of the data dir, with the password user, and the socket dir beside it.
    async fn init_cluster(&self) {
        let sock = self.socket_dir();
        std::fs::create_dir(&sock).expect("create the socket dir");
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("write the password file");
        if let Some(user) = &self.run_as {
            for path in [self.dir.path(), &sock, &pwfile] {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
            }
        }
        self.run(
            "initdb",
            args([
                OsString::from("-D"),
                self.data_dir().into(),
                format!("--username={USER}").into(),
                format!("--pwfile={}", pwfile.display()).into(),
                "--auth-local=trust".into(),
                "--auth-host=scram-sha-256".into(),
                "--encoding=UTF8".into(),
                "--locale=C".into(),
                "--no-sync".into(),
                "--no-instructions".into(),
            ]),
        )
        .await;
        let _ = std::fs::remove_file(&pwfile);
    }

    /// `createdb` of the test database, over the socket.
    async fn create_database(&self) {
        self.run(
            "createdb",
            args([
                "-h".to_owned(),
                self.socket_dir().display().to_string(),
                "-p".to_owned(),
                self.port.to_string(),
                "-U".to_owned(),
                USER.to_owned(),
                DATABASE.to_owned(),
            ]),
        )
        .await;
    }

    /// `postgres://testbed:testbed-password@127.0.0.1:PORT/testbed`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// The port (kept across [`Postgres::stop`] and [`Postgres::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        process::log_tail(&self.log_path())
    }

    /// Whether the server is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ServerProcess::is_running)
    }

    /// Stops the server (`pg_ctl stop -m fast`), keeping its data: connections fail until
    /// [`Postgres::start_again`].
    pub async fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        let data = self.data_dir();
        self.run(
            "pg_ctl stop",
            args([
                OsString::from("stop"),
                "-D".into(),
                data.into(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
            ]),
        )
        .await;
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the server again on the same data dir and port.
    pub async fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        let launched = self.launch(self.port).await;
        process::keep_ready(&mut self.process, launched);
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Spawns `postgres` on `port` in the foreground (our child, so it dies with the test) and
    /// waits until `pg_isready` says it accepts connections.
    async fn launch(&self, port: u16) -> (ServerProcess, Result<(), NotReady>) {
        let mut cmd = process::command(
            &self.bin.join("postgres"),
            &args([
                OsString::from("-D"),
                self.data_dir().into(),
                "-p".into(),
                port.to_string().into(),
                "-c".into(),
                "listen_addresses=127.0.0.1".into(),
                "-c".into(),
                format!("unix_socket_directories={}", self.socket_dir().display()).into(),
                "-c".into(),
                "fsync=off".into(),
                "-c".into(),
                "full_page_writes=off".into(),
            ]),
            self.run_as.as_ref(),
            true,
        );
        cmd.current_dir(self.dir.path());
        let mut process = ServerProcess::spawn("postgres", cmd, &self.log_path());
        let isready = self.bin.join("pg_isready");
        let port = port.to_string();
        let ready = process
            .wait_ready(|| {
                let mut cmd = tokio::process::Command::new(&isready);
                cmd.args(["-q", "-h", "127.0.0.1", "-p", &port, "-d", "postgres"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true);
                async move { cmd.status().await.is_ok_and(|s| s.success()) }
            })
            .await;
        (process, ready)
    }

    /// Runs a PostgreSQL client program from the bin dir, as the `postgres` user when root.
    async fn run(&self, program: &str, arguments: Vec<OsString>) -> String {
        let binary = program.split(' ').next().unwrap_or(program);
        let mut cmd = process::command(
            &self.bin.join(binary),
            &arguments,
            self.run_as.as_ref(),
            false,
        );
        cmd.current_dir(self.dir.path());
        process::run_to_completion(program, cmd).await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.is_running() {
            let mut cmd = process::command(
                &self.bin.join("pg_ctl"),
                &args([
                    OsString::from("stop"),
                    "-D".into(),
                    self.data_dir().into(),
                    "-m".into(),
                    "immediate".into(),
                    "-w".into(),
                    "-t".into(),
                    "10".into(),
                ]),
                self.run_as.as_ref(),
                false,
            );
            let _ = cmd
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Kill whatever is left of the process group before the temp dir goes.
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

/// The OS user to run PostgreSQL as: `postgres` when this process is root (PostgreSQL refuses
/// root), else none.
fn user_for(dir: &Path) -> Option<RunAs> {
    if process::effective_uid(dir) != 0 {
        return None;
    }
    Some(RunAs::lookup("postgres").unwrap_or_else(|| {
        panic!("running as root and there is no `postgres` OS user to run PostgreSQL as")
    }))
}

/// Debian's newest `/usr/lib/postgresql/<version>/bin`, else the directory of `initdb` on PATH.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            process::is_executable(&bin.join("initdb")).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    process::find_program("initdb")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| process::missing("PostgreSQL (initdb)"))
}
