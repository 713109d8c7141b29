//! The Blynk hardware protocol as the server reads a device's TCP stream
//! (`greenlight_sim::blynk::protocol::FrameDecoder`, fed in pieces of any
//! size), each frame's NUL-separated body (`body_parts`) and the device
//! info a server reads from it (`server::HardwareInfo::parse`).
//!
//! Input: one byte of body limit, one of piece size, then the stream.
//!
//! Properties: a frame's body never exceeds the limit, and a frame never
//! claims more bytes than arrived; the frames decoded, encoded again, are
//! exactly the bytes they were read from; an over-long length is refused
//! with the length it announced; the info parser always leaves a positive
//! buffer size.
#![no_main]

use greenlight_sim::blynk::protocol::{body_parts, Frame, FrameDecoder, FrameError};
use greenlight_sim::blynk::server::HardwareInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = usize::from(data[0]) * 16;
    let piece = usize::from(data[1] % 64) + 1;
    let stream = &data[2..];
    let mut dec = FrameDecoder::new(max);
    let mut consumed = 0usize;
    let mut fed = 0usize;
    let mut frames = vec![];
    'feed: while fed < stream.len() {
        let n = piece.min(stream.len() - fed);
        dec.push(&stream[fed..fed + n]);
        fed += n;
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    let wire = f.encode().expect("a decoded frame encodes");
                    assert!(
                        consumed + wire.len() <= fed,
                        "a frame longer than the input"
                    );
                    assert_eq!(&stream[consumed..consumed + wire.len()], wire.as_slice());
                    consumed += wire.len();
                    if let Frame::Message { body, .. } = &f {
                        assert!(body.len() <= max, "{} > {max}", body.len());
                    }
                    frames.push(f);
                }
                Ok(None) => break,
                Err(FrameError::TooLong { len, max: m }) => {
                    assert_eq!(m, max);
                    assert!(len > max);
                    let at = &stream[consumed..];
                    assert_eq!(usize::from(u16::from_be_bytes([at[3], at[4]])), len);
                    break 'feed;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    // Decoding the same bytes in one piece gives the same frames.
    let mut whole = FrameDecoder::new(max);
    whole.push(&stream[..consumed]);
    for f in &frames {
        assert_eq!(whole.next_frame().ok().flatten().as_ref(), Some(f));
    }
    for f in &frames {
        let parts = f.parts();
        if let Frame::Message { body, .. } = f {
            assert!(parts.len() <= body.len() + 1);
            assert_eq!(parts, body_parts(body));
        }
        let info = HardwareInfo::parse(&parts);
        assert!(info.buff_in > 0);
    }
});
