//! Every HTTP answer Greenlight reads (the RainMaker cloud's, the Blynk
//! admin API's) goes through [`read_capped`]: a broken or hostile server
//! cannot make it hold more than a fixed number of bytes, whether it
//! announces a huge `Content-Length` or streams without end.
//!
//! The limits are far above what a real server sends and far below what
//! would hurt a phone:
//!
//! - [`MAX_PAGE`] (8 MiB) for the answers that grow with the fleet: a
//!   RainMaker `user/nodes` page (each node with its config and params;
//!   a config is a few KiB and Greenlight asks for 100 nodes a page) and a
//!   Blynk `/admin/users` page or user (a user's JSON carries their whole
//!   dashboard profile).
//! - [`MAX_ANSWER`] (1 MiB) for every other answer: one node's params or
//!   config, an `ota_update` or `ota_status` answer, tokens, errors.

/// The cap on an answer that grows with the fleet (a page of nodes or users).
pub const MAX_PAGE: usize = 8 << 20;
/// The cap on every other answer.
pub const MAX_ANSWER: usize = 1 << 20;

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the cap (announced so, or found so while
    /// reading): the rest is not read and the connection is dropped.
    #[error("the answer is larger than {limit} bytes{}: not read", announced.map(|n| format!(" ({n} bytes announced)")).unwrap_or_default())]
    TooLarge {
        /// The cap.
        limit: usize,
        /// The `Content-Length` the server announced, if any.
        announced: Option<u64>,
    },
    /// The connection failed while the body was read.
    #[error("reading the answer: {0}")]
    Read(#[source] reqwest::Error),
}

/// Reads `resp`'s body as text (invalid UTF-8 replaced), at most `limit`
/// bytes. The loop ends within `limit + 1` chunks (a chunk is never empty,
/// and an empty one is counted anyway) and within the client's request
/// timeout, which covers the body.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<String, BodyError> {
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit, announced });
    }
    let mut buf: Vec<u8> = Vec::with_capacity(announced.unwrap_or(0) as usize);
    for _ in 0..=limit {
        match resp.chunk().await.map_err(BodyError::Read)? {
            None => return Ok(String::from_utf8_lossy(&buf).into_owned()),
            Some(c) if buf.len() + c.len() > limit => {
                return Err(BodyError::TooLarge { limit, announced })
            }
            Some(c) => buf.extend_from_slice(&c),
        }
    }
    Err(BodyError::TooLarge { limit, announced })
}
