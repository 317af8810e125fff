//! A real SMTP server (`aiosmtpd`) that stores every message in a maildir.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use mail_parser::{HeaderValue, MessageParser};
use tempfile::TempDir;
use tokio::io::AsyncReadExt as _;

use crate::process::{self, NotReady, ServerProcess, args};

/// One message from the maildir.
#[derive(Debug, Clone)]
pub struct Email {
    /// Every header in order, unfolded; encoded words (RFC 2047) decoded where the header is
    /// text. aiosmtpd adds `X-Peer`, `X-MailFrom` and `X-RcptTo` (the envelope).
    pub headers: Vec<(String, String)>,
    /// The decoded `Subject`.
    pub subject: Option<String>,
    /// `From` addresses.
    pub from: Vec<String>,
    /// `To` addresses.
    pub to: Vec<String>,
    /// The first text/plain body (decoded from quoted-printable or base64), or the text of the
    /// HTML body when there is no plain part.
    pub text: String,
    /// The first text/html body, if any.
    pub html: Option<String>,
    /// The message as stored.
    pub raw: Vec<u8>,
}

impl Email {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn parse(raw: Vec<u8>) -> Option<Self> {
        let message = MessageParser::default().parse(&raw)?;
        let headers = message
            .headers()
            .iter()
            .map(|h| {
                let value = match h.value() {
                    HeaderValue::Text(text) => unfold(text),
                    HeaderValue::TextList(list) => unfold(&list.join(", ")),
                    _ => {
                        let start = h.offset_start as usize;
                        let end = (h.offset_end as usize).min(raw.len());
                        unfold(&String::from_utf8_lossy(
                            raw.get(start..end).unwrap_or_default(),
                        ))
                    }
                };
                (h.name().to_owned(), value)
            })
            .collect();
        let addresses = |address: Option<&mail_parser::Address<'_>>| -> Vec<String> {
            address
                .map(|a| {
                    a.iter()
                        .filter_map(|addr| addr.address().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(Email {
            headers,
            subject: message.subject().map(str::to_owned),
            from: addresses(message.from()),
            to: addresses(message.to()),
            text: message
                .body_text(0)
                .map(|b| b.into_owned())
                .unwrap_or_default(),
            // Only a real text/html part (mail-parser would render the text part as HTML).
            html: message.html_part(0).and_then(|part| match &part.body {
                mail_parser::PartType::Html(html) => Some(html.to_string()),
                _ => None,
            }),
            raw: raw.clone(),
        })
    }
}

fn unfold(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An SMTP server on `127.0.0.1:PORT` (`python -m aiosmtpd` with the `Mailbox` handler) that
/// accepts every message without authentication or TLS. Killed on drop.
#[derive(Debug)]
pub struct SmtpSink {
    process: Option<ServerProcess>,
    port: u16,
    python: PathBuf,
    dir: TempDir,
}

impl SmtpSink {
    /// Starts the server and waits for its `220` greeting.
    pub async fn start() -> Self {
        let python = python_with_aiosmtpd();
        let dir = process::temp_dir("smtp");
        let mut sink = Self {
            process: None,
            port: 0,
            python,
            dir,
        };
        let this = &sink;
        let (process, port) = process::start_on_free_port(move |port| this.launch(port)).await;
        sink.port = port;
        sink.process = Some(process);
        sink
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The port (kept across [`SmtpSink::stop`] and [`SmtpSink::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The maildir the messages land in.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        process::log_tail(&self.dir.path().join("smtp.log"))
    }

    /// Every message received so far, oldest first (also those received before a restart).
    pub fn messages(&self) -> Vec<Email> {
        let maildir = self.maildir();
        let mut files: Vec<(SystemTime, PathBuf)> = ["new", "cur"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(maildir.join(sub)).into_iter().flatten())
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| {
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (modified, e.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| {
                let raw = std::fs::read(&path).ok()?;
                Email::parse(raw)
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived and returns them all.
    ///
    /// # Panics
    /// When fewer than `n` arrive within `timeout`.
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Email> {
        let arrived = crate::wait_until(timeout, || async { self.messages().len() >= n }).await;
        let messages = self.messages();
        assert!(
            arrived,
            "SmtpSink {}: expected {n} message(s) within {timeout:?}, got {}; log:\n{}",
            self.addr(),
            messages.len(),
            self.log_tail()
        );
        messages
    }

    /// Whether the server is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ServerProcess::is_running)
    }

    /// Kills the server (an outage): connections are refused until [`SmtpSink::start_again`].
    /// Messages already received stay in the maildir.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the server again on the same port and maildir.
    pub async fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        let launched = self.launch(self.port).await;
        process::keep_ready(&mut self.process, launched);
    }

    /// Spawns aiosmtpd on `port` and waits for its greeting.
    async fn launch(&self, port: u16) -> (ServerProcess, Result<(), NotReady>) {
        let mut cmd = process::command(
            &self.python,
            &args([
                OsString::from("-m"),
                "aiosmtpd".into(),
                "-n".into(),
                "-l".into(),
                format!("127.0.0.1:{port}").into(),
                "-c".into(),
                "aiosmtpd.handlers.Mailbox".into(),
                self.maildir().into(),
            ]),
            None,
            true,
        );
        cmd.env("PYTHONUNBUFFERED", "1");
        let log = self.dir.path().join("smtp.log");
        let mut process = ServerProcess::spawn("aiosmtpd", cmd, &log);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let ready = process.wait_ready(|| greets(addr)).await;
        (process, ready)
    }
}

/// Connects and reads the `220` greeting.
async fn greets(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut buf = [0u8; 3];
        stream.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"220")
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// `$ORGANISM_TOOLS/venv/bin/python`, else a `python3` on PATH that has aiosmtpd.
fn python_with_aiosmtpd() -> PathBuf {
    let venv = process::tools_dir().join("venv").join("bin").join("python");
    if has_aiosmtpd(&venv) {
        return venv;
    }
    process::find_program("python3")
        .filter(|p| has_aiosmtpd(p))
        .unwrap_or_else(|| process::missing("aiosmtpd (Python)"))
}

fn has_aiosmtpd(python: &Path) -> bool {
    process::is_executable(python)
        && Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_encoded_subject_and_quoted_printable_body() {
        let raw = b"X-Peer: ('127.0.0.1', 5555)\r\n\
From: alert-service <alerts@organism.dev>\r\n\
To: oncall@example.org, second@example.org\r\n\
Subject: =?utf-8?q?=5BFIRING=5D_HeartDown_=E2=80=94_heart?=\r\n\
X-Long: first part\r\n  continued\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Runbook: https://runbooks.organism.dev/HeartDown?a=3D1\r\n\
caf=C3=A9\r\n"
            .to_vec();
        let email = Email::parse(raw).unwrap();
        assert_eq!(email.subject.as_deref(), Some("[FIRING] HeartDown — heart"));
        assert_eq!(email.from, ["alerts@organism.dev"]);
        assert_eq!(email.to, ["oncall@example.org", "second@example.org"]);
        assert!(
            email
                .text
                .contains("https://runbooks.organism.dev/HeartDown?a=1"),
            "{}",
            email.text
        );
        assert!(email.text.contains("café"));
        assert_eq!(email.header("x-long"), Some("first part continued"));
        assert_eq!(email.header("X-Peer"), Some("('127.0.0.1', 5555)"));
        assert_eq!(email.html, None);
    }
}
