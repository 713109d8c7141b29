//! The Blynk hardware protocol's framing, shared by the simulated server, the
//! simulated devices and tests that speak it over a raw socket.
//!
//! A frame is `[cmd u8][msg_id u16 BE][len u16 BE][body]`, except `RESPONSE`
//! (cmd 0), whose length field carries the status code and which has no body.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Command codes (the `cmd` byte).
pub mod cmd {
    /// Reply to a message; the length field is the status.
    pub const RESPONSE: u8 = 0;
    /// Login (hardware: body is the token).
    pub const LOGIN: u8 = 2;
    /// Heartbeat.
    pub const PING: u8 = 6;
    /// Device-to-device message.
    pub const BRIDGE: u8 = 15;
    /// Device asks for its stored pin values.
    pub const HARDWARE_SYNC: u8 = 16;
    /// Internal messages: device info, OTA (`msg_id` 7777), rtc...
    pub const INTERNAL: u8 = 17;
    /// Widget property change.
    pub const PROPERTY: u8 = 19;
    /// Pin reads and writes.
    pub const HARDWARE: u8 = 20;
    /// Hardware login (body is the token).
    pub const HW_LOGIN: u8 = 29;
}

/// Status codes carried by `RESPONSE`.
pub mod status {
    /// Success.
    pub const OK: u16 = 200;
    /// Command not known or not allowed here.
    pub const ILLEGAL_COMMAND: u16 = 2;
    /// Not allowed.
    pub const NOT_ALLOWED: u16 = 6;
    /// Unknown token on login.
    pub const INVALID_TOKEN: u16 = 9;
    /// Malformed body.
    pub const ILLEGAL_COMMAND_BODY: u16 = 11;
    /// Server-side failure.
    pub const SERVER_ERROR: u16 = 19;
}

/// Message id of the server's OTA command (`INTERNAL`, body `ota\0<url>`).
pub const OTA_MSG_ID: u16 = 7777;

/// Largest body the simulated server accepts from a device. The libraries
/// send at most a few hundred bytes; anything this large is garbage.
pub const MAX_BODY: usize = 8192;

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `RESPONSE` to message `id` with `status`.
    Response {
        /// Id of the message being answered.
        id: u16,
        /// Status code (see [`status`]).
        status: u16,
    },
    /// Any other command, with its body.
    Message {
        /// Command code (see [`cmd`]).
        cmd: u8,
        /// Message id.
        id: u16,
        /// Body: NUL-separated strings.
        body: Vec<u8>,
    },
}

/// Why a byte stream could not be read as frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A frame announced a body larger than allowed.
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A body longer than a u16 length field can carry.
    #[error("body of {0} bytes does not fit a frame")]
    BodyTooLarge(usize),
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

impl Frame {
    /// A `RESPONSE` frame.
    pub fn response(id: u16, status: u16) -> Frame {
        Frame::Response { id, status }
    }

    /// A message whose body is `parts` joined by NUL.
    pub fn message(cmd: u8, id: u16, parts: &[&str]) -> Frame {
        Frame::Message {
            cmd,
            id,
            body: parts.join("\0").into_bytes(),
        }
    }

    /// The command code.
    pub fn cmd(&self) -> u8 {
        match self {
            Frame::Response { .. } => cmd::RESPONSE,
            Frame::Message { cmd, .. } => *cmd,
        }
    }

    /// The message id.
    pub fn id(&self) -> u16 {
        match self {
            Frame::Response { id, .. } | Frame::Message { id, .. } => *id,
        }
    }

    /// The body split at NULs (lossy UTF-8); empty for `RESPONSE`.
    pub fn parts(&self) -> Vec<String> {
        match self {
            Frame::Response { .. } => vec![],
            Frame::Message { body, .. } => body_parts(body),
        }
    }

    /// The wire bytes.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        match self {
            Frame::Response { id, status } => {
                let mut v = Vec::with_capacity(5);
                v.push(cmd::RESPONSE);
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(&status.to_be_bytes());
                Ok(v)
            }
            Frame::Message { cmd, id, body } => {
                let len =
                    u16::try_from(body.len()).map_err(|_| FrameError::BodyTooLarge(body.len()))?;
                let mut v = Vec::with_capacity(5 + body.len());
                v.push(*cmd);
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(&len.to_be_bytes());
                v.extend_from_slice(body);
                Ok(v)
            }
        }
    }
}

/// Splits a body at NULs. A trailing NUL (the libraries' info string ends
/// with one) does not produce an empty last part.
pub fn body_parts(body: &[u8]) -> Vec<String> {
    let body = body.strip_suffix(b"\0").unwrap_or(body);
    if body.is_empty() {
        return vec![];
    }
    body.split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// Incremental decoder: feed it whatever the socket returned, take whole
/// frames out. Partial headers and bodies simply wait for more bytes.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_body: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(MAX_BODY)
    }
}

impl FrameDecoder {
    /// A decoder refusing bodies longer than `max_body`.
    pub fn new(max_body: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            max_body,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let cmd = self.buf[0];
        let id = u16::from_be_bytes([self.buf[1], self.buf[2]]);
        let len = u16::from_be_bytes([self.buf[3], self.buf[4]]);
        if cmd == cmd::RESPONSE {
            self.buf.drain(..5);
            return Ok(Some(Frame::Response { id, status: len }));
        }
        let len = len as usize;
        if len > self.max_body {
            return Err(FrameError::TooLong {
                len,
                max: self.max_body,
            });
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let body = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some(Frame::Message { cmd, id, body }))
    }
}

/// Reads the next frame from `r`, using `dec` for bytes already received.
/// `Ok(None)` when the peer closed the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    dec: &mut FrameDecoder,
) -> Result<Option<Frame>, FrameError> {
    let mut buf = [0u8; 1024];
    loop {
        if let Some(f) = dec.next_frame()? {
            return Ok(Some(f));
        }
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        dec.push(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_reads() {
        let login = Frame::message(cmd::HW_LOGIN, 1, &["abc"]);
        let resp = Frame::response(1, status::OK);
        let mut bytes = login.encode().unwrap();
        bytes.extend(resp.encode().unwrap());
        let mut dec = FrameDecoder::default();
        let mut got = vec![];
        // One byte at a time: every split point of header and body.
        for b in bytes {
            dec.push(&[b]);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![login, resp]);
    }

    #[test]
    fn response_has_status_in_length_field() {
        assert_eq!(
            Frame::response(0x0102, 9).encode().unwrap(),
            vec![0, 1, 2, 0, 9]
        );
    }

    #[test]
    fn oversized_length_is_an_error() {
        let mut dec = FrameDecoder::new(100);
        dec.push(&[cmd::HARDWARE, 0, 1, 0xff, 0xff]);
        assert!(matches!(
            dec.next_frame(),
            Err(FrameError::TooLong { len: 65535, .. })
        ));
    }

    #[test]
    fn body_parts_ignore_one_trailing_nul() {
        assert_eq!(body_parts(b"ver\x000.6.1\x00"), vec!["ver", "0.6.1"]);
        assert_eq!(body_parts(b"ota\x00"), vec!["ota"]);
        assert!(body_parts(b"").is_empty());
    }
}
