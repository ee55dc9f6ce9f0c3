//! The Kubernetes WebSocket channel protocols for exec and attach, and a session
//! served from a runtime's own pipes ([`LocalStream`]).
//!
//! Every message carries one stream: its first byte (or, in `base64.channel.k8s.io`,
//! first character) names the channel — 0 stdin, 1 stdout, 2 stderr, 3 error, 4
//! resize — and the rest is the data. The versions differ in what the error channel
//! carries (v1–v3: the failure's text; v4 and v5: a `metav1.Status` JSON object that
//! also reports the exit code) and v5 adds channel 255, a half-close: `[255, 0]`
//! says "stdin is done", so `echo hi | kubectl exec -i … -- cat` can end.

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::runtime::{LocalStream, StreamRequest};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` ends one stream (stdin) while the others go on.
pub const CLOSE: u8 = 255;

/// A WebSocket subprotocol of the channel family, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChannelProtocol {
    Base64,
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl ChannelProtocol {
    /// In the order the server prefers them.
    pub const PREFERRED: [ChannelProtocol; 6] =
        [ChannelProtocol::V5, ChannelProtocol::V4, ChannelProtocol::V3, ChannelProtocol::V2, ChannelProtocol::V1, ChannelProtocol::Base64];

    pub fn name(self) -> &'static str {
        match self {
            ChannelProtocol::Base64 => "base64.channel.k8s.io",
            ChannelProtocol::V1 => "channel.k8s.io",
            ChannelProtocol::V2 => "v2.channel.k8s.io",
            ChannelProtocol::V3 => "v3.channel.k8s.io",
            ChannelProtocol::V4 => "v4.channel.k8s.io",
            ChannelProtocol::V5 => "v5.channel.k8s.io",
        }
    }

    pub fn from_name(name: &str) -> Option<ChannelProtocol> {
        ChannelProtocol::PREFERRED.into_iter().find(|p| p.name() == name)
    }

    /// Whether the error channel carries a `Status` object (v4 and later).
    fn status_errors(self) -> bool {
        self >= ChannelProtocol::V4
    }
}

/// The subprotocols a client offers (`Sec-WebSocket-Protocol`, comma-separated,
/// possibly over several header lines).
pub fn offered_protocols<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values.into_iter().flat_map(|v| v.split(',')).map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

/// The protocol to speak: the newest one the client offers. A client that offers
/// none gets `channel.k8s.io`, as upstream's; one that offers only unknown
/// protocols gets `None`.
pub fn negotiate(offered: &[String]) -> Option<(ChannelProtocol, bool)> {
    if offered.is_empty() {
        return Some((ChannelProtocol::V1, false));
    }
    ChannelProtocol::PREFERRED.into_iter().find(|p| offered.iter().any(|o| o == p.name())).map(|p| (p, true))
}

/// One message on `channel`.
pub fn frame(protocol: ChannelProtocol, channel: u8, data: &[u8]) -> Message {
    use base64::Engine;
    if protocol == ChannelProtocol::Base64 {
        let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        text.push(char::from(b'0' + channel));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
        return Message::text(text);
    }
    let mut buf = BytesMut::with_capacity(1 + data.len());
    buf.put_u8(channel);
    buf.put_slice(data);
    Message::Binary(buf.freeze())
}

/// The channel and data of a received message; `None` for control frames and
/// malformed data.
pub fn unframe(protocol: ChannelProtocol, message: Message) -> Option<(u8, Bytes)> {
    use base64::Engine;
    match message {
        Message::Binary(b) if protocol != ChannelProtocol::Base64 && !b.is_empty() => Some((b[0], b.slice(1..))),
        Message::Text(t) if protocol == ChannelProtocol::Base64 && !t.is_empty() => {
            let channel = t.as_bytes()[0].checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD.decode(&t.as_bytes()[1..]).ok()?;
            Some((channel, Bytes::from(data)))
        }
        _ => None,
    }
}

/// How the session ended, for the error channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command exited with a non-zero code.
    ExitCode { code: i32, command: Vec<String> },
    /// The session failed for another reason.
    Failed(String),
}

impl Outcome {
    fn message(&self) -> String {
        match self {
            Outcome::Success => String::new(),
            // Worded as containerd's exec error, which upstream wraps the same way.
            Outcome::ExitCode { code, command } => {
                format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" "))
            }
            Outcome::Failed(m) => m.clone(),
        }
    }

    /// The error channel's payload for `protocol`; `None` when there is nothing to
    /// send (success before v4).
    pub fn error_payload(&self, protocol: ChannelProtocol) -> Option<Vec<u8>> {
        if !protocol.status_errors() {
            return (*self != Outcome::Success).then(|| self.message().into_bytes());
        }
        let status = match self {
            Outcome::Success => json!({"metadata": {}, "status": "Success"}),
            Outcome::ExitCode { code, .. } => json!({
                "metadata": {},
                "status": "Failure",
                "message": self.message(),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Outcome::Failed(m) => json!({"metadata": {}, "status": "Failure", "message": m, "reason": "InternalError", "code": 500}),
        };
        Some(serde_json::to_vec(&status).unwrap_or_default())
    }
}

/// Whether the session is an exec (its exit code is the outcome) or an attach
/// (which ends successfully when the container's streams end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKind {
    Exec,
    Attach,
}

/// Serves one exec or attach over `ws` from the runtime's pipes, until the process
/// ends (its output drained and its outcome sent) or the client goes away.
pub async fn serve_local<S>(ws: WebSocketStream<S>, protocol: ChannelProtocol, local: LocalStream, request: StreamRequest, kind: SessionKind)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut incoming) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let LocalStream { stdin, stdout, stderr, resize, exit } = local;

    let writer = async move {
        while let Some(message) = rx.recv().await {
            let last = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || last {
                break;
            }
        }
        let _ = sink.close().await;
    };

    let output = {
        let tx = tx.clone();
        async move {
            // Upstream sends an empty message on the lowest writable channel first, to
            // tell the client the session is up.
            let first = if request.stdout { STDOUT } else if request.stderr { STDERR } else { ERROR };
            let _ = tx.send(frame(protocol, first, b"")).await;
            tokio::join!(pump(stdout, STDOUT, protocol, tx.clone()), pump(stderr, STDERR, protocol, tx.clone()));
            let outcome = match (exit.await, kind) {
                (Ok(_), SessionKind::Attach) | (Ok(0), SessionKind::Exec) => Outcome::Success,
                (Ok(code), SessionKind::Exec) => Outcome::ExitCode { code, command: request.command.clone() },
                (Err(_), _) => Outcome::Failed("the session ended without an exit status".into()),
            };
            if let Some(payload) = outcome.error_payload(protocol) {
                let _ = tx.send(frame(protocol, ERROR, &payload)).await;
            }
            let _ = tx.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
        }
    };
    drop(tx);

    let reader = async move {
        let mut stdin = stdin;
        while let Some(message) = incoming.next().await {
            let message = match message {
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(m) => m,
            };
            let Some((channel, data)) = unframe(protocol, message) else { continue };
            match channel {
                STDIN => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                RESIZE => {
                    if let (Some(r), Some(size)) = (&resize, parse_resize(&data)) {
                        let _ = r.send(size);
                    }
                }
                CLOSE if protocol == ChannelProtocol::V5 && data.first() == Some(&STDIN) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    };

    tokio::select! {
        _ = async { tokio::join!(writer, output) } => {}
        _ = reader => {}
    }
}

/// Copies one output pipe into its channel until it ends.
async fn pump(pipe: Option<std::pin::Pin<Box<dyn AsyncRead + Send>>>, channel: u8, protocol: ChannelProtocol, tx: mpsc::Sender<Message>) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(frame(protocol, channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A resize message: `{"Width": columns, "Height": rows}`.
pub fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let size: Size = serde_json::from_slice(data).ok()?;
    Some((size.width, size.height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_newest_offered_protocol_wins() {
        let offered = offered_protocols(["v4.channel.k8s.io, v5.channel.k8s.io", "channel.k8s.io"]);
        assert_eq!(negotiate(&offered), Some((ChannelProtocol::V5, true)));
        assert_eq!(negotiate(&[]), Some((ChannelProtocol::V1, false)));
        assert_eq!(negotiate(&["SPDY/3.1+portforward.k8s.io".to_string()]), None);
    }

    #[test]
    fn binary_frames_carry_the_channel_in_their_first_byte() {
        let m = frame(ChannelProtocol::V5, STDOUT, b"hi");
        assert_eq!(m, Message::Binary(Bytes::from_static(b"\x01hi")));
        assert_eq!(unframe(ChannelProtocol::V5, m), Some((STDOUT, Bytes::from_static(b"hi"))));
        assert_eq!(unframe(ChannelProtocol::V4, Message::Binary(Bytes::new())), None);
    }

    #[test]
    fn base64_frames_carry_the_channel_as_a_digit() {
        let m = frame(ChannelProtocol::Base64, STDERR, b"hi");
        assert_eq!(m, Message::text("2aGk="));
        assert_eq!(unframe(ChannelProtocol::Base64, m), Some((STDERR, Bytes::from_static(b"hi"))));
    }

    #[test]
    fn a_non_zero_exit_is_reported_as_a_status_with_the_code() {
        let outcome = Outcome::ExitCode { code: 3, command: vec!["sh".into(), "-c".into(), "exit 3".into()] };
        let status: Value = serde_json::from_slice(&outcome.error_payload(ChannelProtocol::V5).unwrap()).unwrap();
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        assert_eq!(status["message"], "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3");
        let ok: Value = serde_json::from_slice(&Outcome::Success.error_payload(ChannelProtocol::V4).unwrap()).unwrap();
        assert_eq!(ok["status"], "Success");
        // Before v4 the error channel is plain text, and silent on success.
        assert_eq!(Outcome::Success.error_payload(ChannelProtocol::V2), None);
        assert!(String::from_utf8(outcome.error_payload(ChannelProtocol::V1).unwrap()).unwrap().contains("exit code 3"));
    }

    #[test]
    fn resize_messages_name_width_and_height() {
        assert_eq!(parse_resize(br#"{"Width":120,"Height":40}"#), Some((120, 40)));
        assert_eq!(parse_resize(b"junk"), None);
    }
}
