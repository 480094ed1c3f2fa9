//! Reading a responder's answer to one request: STDOUT and STDERR records until
//! END_REQUEST, with STDOUT capped and STDERR cut. Records of the connection's earlier
//! requests (a handler's goroutine writing after its request ended) are strays: counted,
//! bounded and dropped unread, so one caller's bytes never reach another. A record of a
//! request the connection never carried is a broken protocol. Whatever the responder
//! sends, the result is an answer or a reason, never a panic or an unbounded allocation.

use super::fastcgi::{read_record, END_REQUEST, STDERR, STDOUT};
use std::io::{self, Read};

/// What the responder answered to one request.
#[derive(Debug, Default)]
pub struct Answer {
    /// The STDOUT stream: a CGI response.
    pub stdout: Vec<u8>,
    /// The STDERR stream (kept up to `keep_stderr` bytes).
    pub stderr: Vec<u8>,
    /// END_REQUEST's application status.
    pub app_status: u32,
    /// END_REQUEST's protocol status (0: request complete).
    pub protocol_status: u8,
    /// Bytes of earlier requests' records that came meanwhile and were dropped.
    pub strays: u64,
}

/// Why no answer could be read.
#[derive(Debug)]
pub enum ReadFailure {
    /// The connection failed or ended (including a read timeout).
    Io(io::Error),
    /// The responder broke the protocol.
    Protocol(String),
    /// STDOUT went past the limit.
    OutputTooLarge,
}

/// Reads the answer to `request_id`: STDOUT and STDERR until END_REQUEST. STDOUT past
/// `stdout_limit` stops the reading; STDERR past `keep_stderr` is read and dropped. The
/// connection carried requests `1..request_id` before this one, in that order: their
/// records are dropped (up to `stdout_limit` bytes of them); any other id is refused.
pub fn read_answer(
    reader: &mut impl Read,
    request_id: u16,
    stdout_limit: u64,
    keep_stderr: usize,
) -> Result<Answer, ReadFailure> {
    let mut answer = Answer::default();
    loop {
        let record = read_record(reader).map_err(|err| match err.kind() {
            io::ErrorKind::InvalidData => ReadFailure::Protocol(err.to_string()),
            _ => ReadFailure::Io(err),
        })?;
        if record.request_id != request_id {
            match record.request_id {
                // Management records (id 0), such as UNKNOWN_TYPE, carry nothing for us.
                0 => continue,
                earlier if earlier < request_id => {
                    answer.strays += record.content.len() as u64;
                    if answer.strays > stdout_limit {
                        return Err(ReadFailure::Protocol(format!(
                            "more than {stdout_limit} bytes came for requests that had ended"
                        )));
                    }
                    continue;
                }
                never => {
                    return Err(ReadFailure::Protocol(format!(
                        "a record for request {never} came on a connection that has carried \
                         requests up to {request_id}"
                    )))
                }
            }
        }
        match record.kind {
            STDOUT => {
                let total = (answer.stdout.len() + record.content.len()) as u64;
                if total > stdout_limit {
                    return Err(ReadFailure::OutputTooLarge);
                }
                answer.stdout.extend_from_slice(&record.content);
            }
            STDERR => {
                let room = keep_stderr.saturating_sub(answer.stderr.len());
                let take = room.min(record.content.len());
                answer.stderr.extend_from_slice(&record.content[..take]);
            }
            END_REQUEST => {
                let body: [u8; 8] = record
                    .content
                    .get(..8)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| {
                        ReadFailure::Protocol("END_REQUEST is shorter than 8 bytes".into())
                    })?;
                answer.app_status = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                answer.protocol_status = body[4];
                return Ok(answer);
            }
            other => {
                return Err(ReadFailure::Protocol(format!(
                    "unexpected record type {other} in an answer"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warm::fastcgi::{encode_records, STDIN};

    /// A management record the responder sends for a type it does not know.
    const UNKNOWN_TYPE: u8 = 11;

    fn answer_bytes(parts: &[(u8, u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, id, content) in parts {
            encode_records(&mut out, *kind, *id, content);
        }
        out
    }

    fn read(bytes: &[u8], limit: u64) -> Result<Answer, ReadFailure> {
        read_answer(&mut &bytes[..], 1, limit, 4)
    }

    #[test]
    fn records_of_earlier_requests_are_dropped_and_counted() {
        let end = [0u8; 8];
        let bytes = answer_bytes(&[
            (STDOUT, 1, b"LATE-DATA-OF-alice"),
            (STDOUT, 3, b"Status: 200\r\n\r\nbob"),
            (STDERR, 2, b"alice's secret"),
            (END_REQUEST, 3, &end),
        ]);
        let answer = read_answer(&mut &bytes[..], 3, 1 << 20, 1024).expect("answer");
        assert_eq!(answer.stdout, b"Status: 200\r\n\r\nbob");
        assert!(
            answer.stderr.is_empty(),
            "another request's stderr is not ours"
        );
        assert_eq!(answer.strays, 18 + 14);
        // Strays are bounded like output: a flood of them breaks the connection.
        let flood = answer_bytes(&[(STDOUT, 1, &[b'x'; 40]), (END_REQUEST, 2, &end)]);
        assert!(matches!(
            read_answer(&mut &flood[..], 2, 32, 4),
            Err(ReadFailure::Protocol(_))
        ));
    }

    #[test]
    fn a_record_of_a_request_never_sent_is_refused() {
        let end = [0u8; 8];
        let bytes = answer_bytes(&[(STDOUT, 5, b"who?"), (END_REQUEST, 2, &end)]);
        match read_answer(&mut &bytes[..], 2, 100, 4) {
            Err(ReadFailure::Protocol(reason)) => assert!(reason.contains("request 5"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_are_read_until_end_request() {
        let end = [0, 0, 0, 7, 0, 0, 0, 0];
        let bytes = answer_bytes(&[
            (STDOUT, 1, b"Status: 200 OK\r\n"),
            (UNKNOWN_TYPE, 0, &[9, 0, 0, 0, 0, 0, 0, 0]),
            (STDERR, 1, b"warning!"),
            (STDOUT, 1, b"\r\nbody"),
            (STDOUT, 1, b""),
            (END_REQUEST, 1, &end),
        ]);
        let answer = read(&bytes, 1 << 20).expect("answer");
        assert_eq!(answer.stdout, b"Status: 200 OK\r\n\r\nbody");
        assert_eq!(answer.stderr, b"warn", "stderr kept up to its cap");
        assert_eq!(answer.app_status, 7);
        assert_eq!(answer.protocol_status, 0);
    }

    #[test]
    fn broken_answers() {
        let end = [0u8; 8];
        let cut = answer_bytes(&[(STDOUT, 1, b"partial")]);
        assert!(
            matches!(read(&cut, 100), Err(ReadFailure::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof)
        );
        let big = answer_bytes(&[(STDOUT, 1, b"12345"), (STDOUT, 1, b"678")]);
        assert!(matches!(read(&big, 6), Err(ReadFailure::OutputTooLarge)));
        let other_id = answer_bytes(&[(STDOUT, 2, b"x"), (END_REQUEST, 2, &end)]);
        assert!(matches!(
            read(&other_id, 100),
            Err(ReadFailure::Protocol(_))
        ));
        let mut bad_version = answer_bytes(&[(END_REQUEST, 1, &end)]);
        bad_version[0] = 2;
        assert!(matches!(
            read(&bad_version, 100),
            Err(ReadFailure::Protocol(_))
        ));
        let short_end = answer_bytes(&[(END_REQUEST, 1, &[0, 0])]);
        assert!(matches!(
            read(&short_end, 100),
            Err(ReadFailure::Protocol(_))
        ));
        let stdin_back = answer_bytes(&[(STDIN, 1, b"x")]);
        assert!(matches!(
            read(&stdin_back, 100),
            Err(ReadFailure::Protocol(_))
        ));
    }

    #[test]
    fn property_reading_garbage_never_panics() {
        let end = [0u8; 8];
        let seed = answer_bytes(&[
            (STDOUT, 1, b"Status: 200\r\n\r\nok"),
            (END_REQUEST, 1, &end),
        ]);
        let mut rng = crate::prop::Rng::new(0xfc62);
        for _ in 0..20_000 {
            let mut input = seed.clone();
            for _ in 0..1 + rng.below(6) {
                crate::prop::mutate(&mut rng, &mut input);
            }
            if let Ok(answer) = read(&input, 64) {
                assert!(answer.stdout.len() <= 64 && answer.stderr.len() <= 4);
            }
        }
    }
}
