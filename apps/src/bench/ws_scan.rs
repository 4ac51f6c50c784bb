//! WebSocket frames for the load generator, without IO: splitting a server's frames in place as
//! bytes arrive, and framing a client's text message (RFC 6455 §5).
//!
//! It is to WebSocket what [`super::scan`] is to event streams: it understands what the bench's
//! own servers send and nothing more. A server's frames are unmasked; the servers send each
//! message as one text frame, may ping, and close. Anything else (a binary or fragmented
//! message, a masked frame, reserved bits, a frame over [`MAX_PAYLOAD`]) is reported once as
//! [`Frame::Unexpected`] and the scanner reads nothing after it: a surprise shows as missing
//! deliveries, never as wrong ones.

/// The largest frame payload the scanner accepts; the bench's messages are a few hundred bytes.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// One frame from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole text message.
    Text(&'a [u8]),
    /// A ping or a pong. The bench's servers wait for no pong, so none is sent.
    Heartbeat,
    /// The server closes, with its status code when it gave one.
    Close(Option<u16>),
    /// A frame the bench's servers never send; the scanner stops here.
    Unexpected,
}

/// Splits a server's frames out of the bytes as they arrive, keeping a partial frame until its
/// end comes.
#[derive(Debug, Default)]
pub struct FrameScanner {
    carry: Vec<u8>,
    stopped: bool,
}

impl FrameScanner {
    /// Feeds the next bytes of the connection; `on_frame` gets every frame they complete.
    pub fn feed(&mut self, chunk: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        if self.stopped {
            return;
        }
        if self.carry.is_empty() {
            let (used, stopped) = scan(chunk, &mut on_frame);
            self.stopped = stopped;
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            self.carry.extend_from_slice(chunk);
            let (used, stopped) = scan(&self.carry, &mut on_frame);
            self.stopped = stopped;
            self.carry.drain(..used);
        }
        if self.stopped {
            self.carry = Vec::new();
        }
    }
}

/// Reports every complete frame in `bytes`; returns how many bytes they took, and whether an
/// unexpected frame stopped the scan.
fn scan(bytes: &[u8], on_frame: &mut impl FnMut(Frame<'_>)) -> (usize, bool) {
    let mut start = 0;
    while let Some(parsed) = parse(&bytes[start..]) {
        let Some((frame, length)) = parsed else {
            on_frame(Frame::Unexpected);
            return (start, true);
        };
        on_frame(frame);
        start += length;
    }
    (start, false)
}

/// The frame at the start of `bytes` and its whole length; `None` while it is incomplete,
/// `Some(None)` when it is not a frame this scanner reads.
fn parse(bytes: &[u8]) -> Option<Option<(Frame<'_>, usize)>> {
    let [first, second, ..] = *bytes else { return None };
    let (fin, reserved, opcode) = (first & 0x80 != 0, first & 0x70, first & 0x0f);
    let (masked, short_length) = (second & 0x80 != 0, second & 0x7f);
    if !fin || reserved != 0 || masked {
        return Some(None);
    }
    let (header, length) = match short_length {
        126 => (4, u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?))),
        127 => (10, u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)),
        short => (2, u64::from(short)),
    };
    let Some(length) = usize::try_from(length).ok().filter(|l| *l <= MAX_PAYLOAD) else {
        return Some(None);
    };
    let payload = bytes.get(header..header + length)?;
    let frame = match opcode {
        0x1 => Frame::Text(payload),
        0x8 => Frame::Close(payload.get(..2).map(|code| u16::from_be_bytes([code[0], code[1]]))),
        0x9 | 0xa => Frame::Heartbeat,
        _ => return Some(None),
    };
    Some(Some((frame, header + length)))
}

/// A client's text message as one masked frame (a server must refuse unmasked client frames).
pub fn masked_text(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x81);
    match payload.len() {
        short @ 0..126 => frame.push(0x80 | short as u8),
        medium @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(medium as u16).to_be_bytes());
        }
        long => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(long as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(byte, key)| byte ^ key));
    frame
}

#[cfg(test)]
mod tests {
    use super::{Frame, FrameScanner, MAX_PAYLOAD, masked_text};

    /// A server's (unmasked) frame.
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = masked_text(payload, [0; 4]);
        frame[0] = 0x80 | opcode;
        // Drop the mask bit and the (all-zero) key: XOR with zeros left the payload as it was.
        frame[1] &= 0x7f;
        let key_at = frame.len() - payload.len() - 4;
        frame.drain(key_at..key_at + 4);
        frame
    }

    fn seen(chunks: &[&[u8]]) -> Vec<String> {
        let mut scanner = FrameScanner::default();
        let mut seen = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, |frame| {
                seen.push(match frame {
                    Frame::Text(data) => String::from_utf8_lossy(data).into_owned(),
                    Frame::Heartbeat => "HEARTBEAT".to_owned(),
                    Frame::Close(code) => format!("CLOSE {code:?}"),
                    Frame::Unexpected => "UNEXPECTED".to_owned(),
                });
            });
        }
        seen
    }

    #[test]
    fn reads_text_heartbeats_and_close_split_anywhere() {
        let long = "x".repeat(300);
        let stream = [
            server_frame(0x1, b"1 100 xx"),
            server_frame(0x9, b""),
            server_frame(0x1, long.as_bytes()),
            server_frame(0x8, &[0x03, 0xf5, b'l', b'a', b'g']),
        ]
        .concat();
        let expected = ["1 100 xx", "HEARTBEAT", long.as_str(), "CLOSE Some(1013)"];
        for cut in 0..=stream.len() {
            for second in (cut..=stream.len()).step_by(7) {
                let parts = [&stream[..cut], &stream[cut..second], &stream[second..]];
                assert_eq!(seen(&parts), expected, "cut at {cut} and {second}");
            }
        }
    }

    #[test]
    fn a_64_bit_length_reads_and_an_unfinished_frame_waits() {
        let payload = vec![b'y'; 70_000];
        let frame = server_frame(0x1, &payload);
        assert_eq!(frame[1], 127, "a 64-bit length");
        assert_eq!(seen(&[&frame]), [String::from_utf8(payload).expect("ASCII")]);
        assert!(seen(&[&frame[..frame.len() - 1]]).is_empty());
    }

    #[test]
    fn what_the_servers_never_send_stops_the_scanner() {
        let text = server_frame(0x1, b"after");
        for surprise in [
            server_frame(0x2, b"binary"),
            server_frame(0x0, b"continuation"),
            masked_text(b"masked", [1, 2, 3, 4]),
            [&[0x01u8, 0x01, b'f'][..]].concat(), // not the final fragment
            [&[0xc1u8, 0x01, b'r'][..]].concat(), // a reserved bit
        ] {
            assert_eq!(seen(&[&surprise, &text]), ["UNEXPECTED"], "{surprise:?}");
        }
        let too_long = [&[0x81u8, 127][..], &((MAX_PAYLOAD as u64) + 1).to_be_bytes()].concat();
        assert_eq!(seen(&[&too_long, &text]), ["UNEXPECTED"]);
        assert_eq!(
            seen(&[&[0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]]),
            ["UNEXPECTED"]
        );
    }

    #[test]
    fn a_masked_text_frame_unmasks_to_its_payload() {
        for length in [0, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..length).map(|i| (i % 251) as u8).collect();
            let mask = [0x37, 0xfa, 0x21, 0x3d];
            let frame = masked_text(&payload, mask);
            assert_eq!(frame[0], 0x81, "a final text frame");
            assert_ne!(frame[1] & 0x80, 0, "masked");
            let header = frame.len() - length - 4;
            assert_eq!(frame[header..header + 4], mask);
            let unmasked: Vec<u8> =
                frame[header + 4..].iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k).collect();
            assert_eq!(unmasked, payload, "length {length}");
        }
    }
}
