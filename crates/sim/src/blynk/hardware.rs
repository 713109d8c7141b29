//! The server's hardware port: one task per TCP connection that speaks the
//! Blynk protocol (login, info, ping, idle timeout) and relays OTA commands
//! pushed by the admin API.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::protocol::{body_parts, cmd, status, Frame, FrameDecoder, MAX_BODY};
use super::server::{HardwareInfo, Server};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Accepts hardware connections until `shutdown` turns true.
pub async fn serve(server: Arc<Server>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(server.clone(), stream, peer, shutdown.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "hardware accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// The server drops a device that sent nothing for about 2.3 heartbeats.
fn idle_limit(heartbeat: Duration) -> Duration {
    heartbeat.mul_f64(2.3)
}

async fn connection(
    server: Arc<Server>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    let mut dec = FrameDecoder::new(MAX_BODY);
    let mut buf = vec![0u8; 4096];
    let mut token: Option<String> = None;
    let mut idle = idle_limit(server.default_heartbeat);
    let mut deadline = Instant::now() + idle;
    let reason = 'conn: loop {
        tokio::select! {
            r = stream.read(&mut buf) => {
                let n = match r {
                    Ok(0) => break 'conn "closed by device",
                    Ok(n) => n,
                    Err(_) => break 'conn "read error",
                };
                dec.push(&buf[..n]);
                loop {
                    let frame = match dec.next_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(_) => break 'conn "oversized frame",
                    };
                    let out = match handle(&server, frame, &mut token, conn, &tx, peer, &mut idle) {
                        Ok(out) => out,
                        Err(why) => break 'conn why,
                    };
                    deadline = Instant::now() + idle;
                    for f in out {
                        if write(&mut stream, &f).await.is_err() {
                            break 'conn "write error";
                        }
                    }
                }
            }
            Some(f) = rx.recv() => {
                if write(&mut stream, &f).await.is_err() {
                    break 'conn "write error";
                }
            }
            _ = tokio::time::sleep_until(deadline) => break 'conn "heartbeat timeout",
            _ = shutdown.changed() => break 'conn "server stopping",
        }
    };
    tracing::debug!(conn, %peer, token = token.as_deref().unwrap_or("-"), reason, "hardware connection closed");
    if let Some(t) = token {
        server.logout(&t, conn);
    }
    let _ = stream.shutdown().await;
}

async fn write(stream: &mut TcpStream, f: &Frame) -> std::io::Result<()> {
    let bytes = f.encode().map_err(std::io::Error::other)?;
    stream.write_all(&bytes).await
}

/// One inbound frame: the frames to write back, or why to hang up.
fn handle(
    server: &Server,
    frame: Frame,
    token: &mut Option<String>,
    conn: u64,
    tx: &mpsc::UnboundedSender<Frame>,
    peer: SocketAddr,
    idle: &mut Duration,
) -> Result<Vec<Frame>, &'static str> {
    let Some(tok) = token.as_deref() else {
        // Libraries log in first thing; anything else on a fresh connection
        // is not a Blynk device.
        return match frame {
            Frame::Message {
                cmd: cmd::LOGIN | cmd::HW_LOGIN,
                id,
                body,
            } => {
                let parts = body_parts(&body);
                let t = parts.first().map(String::as_str).unwrap_or("");
                if server.login(t, conn, tx.clone(), peer.ip().to_string()) {
                    *token = Some(t.to_string());
                    Ok(vec![Frame::response(id, status::OK)])
                } else {
                    Ok(vec![Frame::response(id, status::INVALID_TOKEN)])
                }
            }
            _ => Err("not a login before login"),
        };
    };
    server.touch(tok);
    let (c, id, body) = match frame {
        // Devices do not answer the server's messages; ignore stray replies.
        Frame::Response { .. } => return Ok(vec![]),
        Frame::Message { cmd, id, body } => (cmd, id, body),
    };
    match c {
        cmd::PING => Ok(vec![Frame::response(id, status::OK)]),
        cmd::LOGIN | cmd::HW_LOGIN => Ok(vec![Frame::response(id, status::OK)]),
        cmd::INTERNAL => {
            let parts = body_parts(&body);
            let Some(first) = parts.first().filter(|p| !p.is_empty()) else {
                return Ok(vec![Frame::response(id, status::ILLEGAL_COMMAND)]);
            };
            // The legacy server recognises info by its first key; library 1.3+
            // starts with `mcu`/`ncp`, which it does not know, so those
            // devices are never matched against a campaign.
            match first.as_bytes()[0] {
                b'v' | b'h' | b'b' | b'd' | b'c' | b't' => {
                    let info = HardwareInfo::parse(&parts);
                    if info.heartbeat_interval > 0 {
                        *idle = idle_limit(Duration::from_secs(info.heartbeat_interval as u64));
                    }
                    let mut out = vec![];
                    if let Some(url) = server.hardware_info(tok, info) {
                        tracing::info!(token = tok, %url, "campaign: OTA sent");
                        out.push(Frame::message(
                            cmd::INTERNAL,
                            super::protocol::OTA_MSG_ID,
                            &["ota", &url],
                        ));
                    }
                    out.push(Frame::response(id, status::OK));
                    Ok(out)
                }
                _ => Ok(vec![]),
            }
        }
        // Pin traffic would go to the owner's apps; there are none here.
        cmd::HARDWARE | cmd::PROPERTY | cmd::BRIDGE | cmd::HARDWARE_SYNC => Ok(vec![]),
        c if c < 100 => Ok(vec![Frame::response(id, status::ILLEGAL_COMMAND)]),
        _ => Err("unknown command byte"),
    }
}
