//! JSON bodies for the answers hyper writes itself.
//!
//! A request hyper cannot parse (a malformed request line or header, a URI or header section
//! over its limits) never reaches the router: hyper answers `400`, `414` or `431` with an empty
//! body and closes the connection, and offers no hook to shape that answer. [`JsonParseErrors`]
//! wraps the connection's I/O, recognises that one answer as it is written — a bare head with one
//! of those statuses, `content-length: 0` and no `content-type`, which no answer of the router
//! can be, since every error the router gives is JSON — and writes the standard JSON error body
//! in its place. Everything else passes through untouched; the check costs one prefix compare
//! per write.
//!
//! Not covered: a malformed request pipelined behind a well-formed one on the same connection,
//! when hyper writes the first answer and its own in one write. hyper's empty answer then goes
//! out as it is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project_lite::pin_project! {
    /// A connection whose hyper-written parse-error answers carry the standard JSON error body.
    #[derive(Debug)]
    pub struct JsonParseErrors<IO> {
        #[pin]
        io: IO,
        // The replacement answer, and how much of it has been written.
        pending: Option<(Vec<u8>, usize)>,
        // HTTP/2 connections never carry hyper's HTTP/1 answers: stop looking once seen.
        http2: bool,
        read_any: bool,
    }
}

impl<IO> JsonParseErrors<IO> {
    /// Wraps `io`.
    pub fn new(io: IO) -> Self {
        Self {
            io,
            pending: None,
            http2: false,
            read_any: false,
        }
    }
}

/// The JSON answer that replaces hyper's automatic `head`, or `None` when `head` is anything
/// else.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let (code, message) = match head.get(..13)? {
        b"HTTP/1.1 400 " => (
            "bad_request",
            "the request is not valid HTTP/1.1: its request line or a header is malformed",
        ),
        b"HTTP/1.1 414 " => (
            "uri_too_long",
            "the request's URI is longer than this server accepts",
        ),
        b"HTTP/1.1 431 " => (
            "headers_too_large",
            "the request's headers are larger than this server accepts",
        ),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    let text = text.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut kept = Vec::new();
    let mut empty_body = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "content-type" | "transfer-encoding" => return None,
            "content-length" if value.trim() == "0" => empty_body = true,
            "content-length" | "connection" => {}
            _ => kept.push(line),
        }
    }
    if !empty_body {
        return None;
    }
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut out = format!("{status_line}\r\n");
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("content-type: application/json\r\nconnection: close\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    Some(out.into_bytes())
}

impl<IO: AsyncWrite> JsonParseErrors<IO> {
    /// Writes what is left of the replacement answer.
    fn poll_pending(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        while let Some((bytes, written)) = this.pending.as_mut() {
            if *written == bytes.len() {
                *this.pending = None;
                break;
            }
            let n = ready!(this.io.as_mut().poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as hyper's automatic answer when it is one; returns whether it did.
    fn intercept(self: Pin<&mut Self>, buf: &[u8]) -> bool {
        let this = self.project();
        if *this.http2 {
            return false;
        }
        match replacement(buf) {
            Some(answer) => {
                *this.pending = Some((answer, 0));
                true
            }
            None => false,
        }
    }
}

impl<IO: AsyncRead> AsyncRead for JsonParseErrors<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.io.poll_read(cx, buf))?;
        if !*this.read_any && buf.filled().len() > before {
            *this.read_any = true;
            *this.http2 = buf.filled()[before..].starts_with(b"PRI ");
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite> AsyncWrite for JsonParseErrors<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.as_mut().poll_pending(cx))?;
        if self.as_mut().intercept(buf) {
            // The replacement goes out on the next write, flush or shutdown; hyper flushes next.
            return Poll::Ready(Ok(buf.len()));
        }
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.as_mut().poll_pending(cx))?;
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(first), None) = (non_empty.next(), non_empty.next())
            && self.as_mut().intercept(first)
        {
            return Poll::Ready(Ok(first.len()));
        }
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_pending(cx))?;
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_pending(cx))?;
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 06:00:00 GMT\r\n\r\n";

    fn parts(answer: &[u8]) -> (String, serde_json::Value) {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hypers_empty_400_becomes_a_json_error_with_its_length_and_date() {
        let answer = replacement(HYPER_400).expect("recognised");
        let (head, body) = parts(&answer);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("date: Tue, 01 Dec 2026"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        let text = std::str::from_utf8(&answer).unwrap();
        assert_eq!(declared, text.split_once("\r\n\r\n").unwrap().1.len());
        assert_eq!(body["error"]["code"], "bad_request");
    }

    #[test]
    fn the_431_and_414_answers_are_named() {
        let h431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parts(&replacement(h431).unwrap()).1["error"]["code"],
            "headers_too_large"
        );
        let h414 = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            parts(&replacement(h414).unwrap()).1["error"]["code"],
            "uri_too_long"
        );
    }

    #[test]
    fn the_routers_own_answers_pass_untouched() {
        for head in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert!(
                replacement(head).is_none(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[tokio::test]
    async fn the_replacement_is_written_whole_through_a_slow_writer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A pipe that takes at most 7 bytes per write, to exercise the partial-write path.
        let (client, server) = tokio::io::duplex(7);
        let mut wrapped = JsonParseErrors::new(server);
        let writer = tokio::spawn(async move {
            wrapped.write_all(HYPER_400).await.unwrap();
            wrapped.flush().await.unwrap();
            wrapped.shutdown().await.unwrap();
        });
        let mut out = Vec::new();
        let mut client = client;
        client.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        assert_eq!(out, replacement(HYPER_400).unwrap());
    }
}
