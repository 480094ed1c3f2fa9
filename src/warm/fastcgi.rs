//! The FastCGI 1.0 wire format, as the web-server side speaks it to a responder: record
//! headers, name-value pairs (1-byte and 4-byte lengths), one whole request (BEGIN_REQUEST
//! with KEEP_CONN, PARAMS, empty PARAMS, STDIN, empty STDIN), and reading a record. Pure
//! byte work: no sockets, no processes, no time. Reading an answer is in [`super::answer`].

use std::io::{self, Read};

pub const VERSION: u8 = 1;
pub const BEGIN_REQUEST: u8 = 1;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;

/// The only role this server asks for.
const RESPONDER: u16 = 1;
/// BEGIN_REQUEST flag: keep the connection open after the request.
const KEEP_CONN: u8 = 1;
/// Largest content of one record.
const MAX_CONTENT: usize = 0xffff;
/// Largest length a name-value pair can declare (31 bits).
const MAX_PAIR_LENGTH: usize = 0x7fff_ffff;

/// One record read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub request_id: u16,
    pub content: Vec<u8>,
}

/// Appends one or more records of `kind` carrying `content` (split at 65535 bytes; an empty
/// `content` writes one empty record, which ends a stream). Each is padded to 8 bytes.
pub fn encode_records(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    let mut chunks = content.chunks(MAX_CONTENT).peekable();
    if chunks.peek().is_none() {
        encode_record(out, kind, request_id, &[]);
    }
    for chunk in chunks {
        encode_record(out, kind, request_id, chunk);
    }
}

fn encode_record(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    // Callers split at MAX_CONTENT, so the length fits in 16 bits.
    let length = content.len().min(MAX_CONTENT) as u16;
    let padding = (8 - content.len() % 8) % 8;
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.push(padding as u8);
    out.push(0);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, padding));
}

/// Appends a name-value pair: each length in 1 byte below 128, else in 4 bytes with the top
/// bit set. Longer than 2^31-1 bytes cannot be said and is left out.
pub fn encode_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if name.len() > MAX_PAIR_LENGTH || value.len() > MAX_PAIR_LENGTH {
        return;
    }
    for length in [name.len(), value.len()] {
        if length < 0x80 {
            out.push(length as u8);
        } else {
            out.extend_from_slice(&(length as u32 | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// The bytes of one whole request on a connection that is kept open afterwards.
pub fn encode_request(request_id: u16, params: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let params_len: usize = params.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
    let mut out = Vec::with_capacity(64 + params_len + body.len() + body.len() / MAX_CONTENT * 8);
    let mut begin = [0u8; 8];
    begin[..2].copy_from_slice(&RESPONDER.to_be_bytes());
    begin[2] = KEEP_CONN;
    encode_records(&mut out, BEGIN_REQUEST, request_id, &begin);
    let mut pairs = Vec::with_capacity(params_len);
    for (name, value) in params {
        encode_pair(&mut pairs, name.as_bytes(), value.as_bytes());
    }
    if !pairs.is_empty() {
        encode_records(&mut out, PARAMS, request_id, &pairs);
    }
    encode_records(&mut out, PARAMS, request_id, &[]);
    if !body.is_empty() {
        encode_records(&mut out, STDIN, request_id, body);
    }
    encode_records(&mut out, STDIN, request_id, &[]);
    out
}

/// Reads one record. End of file before its first byte is `UnexpectedEof` like any other
/// cut: the caller knows whether an answer was complete.
pub fn read_record(reader: &mut impl Read) -> io::Result<Record> {
    let mut header = [0u8; 8];
    reader.read_exact(&mut header)?;
    if header[0] != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a record has version {}, not 1", header[0]),
        ));
    }
    let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let padding = usize::from(header[6]);
    let mut content = vec![0u8; length + padding];
    reader.read_exact(&mut content)?;
    content.truncate(length);
    Ok(Record {
        kind: header[1],
        request_id: u16::from_be_bytes([header[2], header[3]]),
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    /// Reads the name-value pairs of a PARAMS stream, as a responder does.
    fn decode_pairs(mut bytes: &[u8]) -> Result<Pairs, String> {
        fn length(bytes: &mut &[u8]) -> Result<usize, String> {
            match bytes.first() {
                None => Err("a pair is cut short in its length".into()),
                Some(b) if b & 0x80 == 0 => {
                    *bytes = &bytes[1..];
                    Ok(usize::from(*b))
                }
                Some(_) => {
                    let four: [u8; 4] = bytes
                        .get(..4)
                        .and_then(|s| s.try_into().ok())
                        .ok_or("a pair is cut short in its 4-byte length")?;
                    *bytes = &bytes[4..];
                    Ok((u32::from_be_bytes(four) & 0x7fff_ffff) as usize)
                }
            }
        }
        let mut pairs = Vec::new();
        while !bytes.is_empty() {
            let name_len = length(&mut bytes)?;
            let value_len = length(&mut bytes)?;
            let total = name_len
                .checked_add(value_len)
                .ok_or("a pair is too long")?;
            if total > bytes.len() {
                return Err("a pair is longer than the stream".into());
            }
            let (name, rest) = bytes.split_at(name_len);
            let (value, rest) = rest.split_at(value_len);
            pairs.push((name.to_vec(), value.to_vec()));
            bytes = rest;
        }
        Ok(pairs)
    }

    fn records(mut bytes: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            out.push(read_record(&mut bytes).expect("record"));
        }
        out
    }

    #[test]
    fn record_header_and_padding() {
        let mut out = Vec::new();
        encode_records(&mut out, STDOUT, 0x0102, b"hello");
        assert_eq!(&out[..8], &[1, STDOUT, 1, 2, 0, 5, 3, 0]);
        assert_eq!(&out[8..13], b"hello");
        assert_eq!(out.len(), 16, "padded to a multiple of 8");
        let read = read_record(&mut &out[..]).expect("reads back");
        assert_eq!(read.kind, STDOUT);
        assert_eq!(read.request_id, 0x0102);
        assert_eq!(read.content, b"hello");
    }

    #[test]
    fn empty_content_ends_a_stream_and_long_content_splits() {
        let mut out = Vec::new();
        encode_records(&mut out, STDIN, 1, b"");
        assert_eq!(out, [1, STDIN, 0, 1, 0, 0, 0, 0]);
        let body = vec![7u8; MAX_CONTENT * 2 + 10];
        let mut out = Vec::new();
        encode_records(&mut out, STDIN, 1, &body);
        let split = records(&out);
        let lengths: Vec<usize> = split.iter().map(|r| r.content.len()).collect();
        assert_eq!(lengths, [MAX_CONTENT, MAX_CONTENT, 10]);
        assert_eq!(split.concat_content(), body);
    }

    trait Concat {
        fn concat_content(&self) -> Vec<u8>;
    }
    impl Concat for Vec<Record> {
        fn concat_content(&self) -> Vec<u8> {
            self.iter().flat_map(|r| r.content.clone()).collect()
        }
    }

    #[test]
    fn pair_lengths_use_one_or_four_bytes() {
        let mut out = Vec::new();
        encode_pair(&mut out, b"A", &[b'x'; 127]);
        assert_eq!(&out[..2], &[1, 127], "both under 128: one byte each");
        let mut out = Vec::new();
        encode_pair(&mut out, b"B", &[b'y'; 128]);
        assert_eq!(&out[..5], &[1, 0x80, 0, 0, 128], "128 needs four bytes");
        let mut out = Vec::new();
        let long_name = vec![b'N'; 300];
        encode_pair(&mut out, &long_name, b"");
        assert_eq!(&out[..5], &[0x80, 0, 1, 44, 0]);
        let decoded = decode_pairs(&out).expect("decodes");
        assert_eq!(decoded, vec![(long_name, Vec::new())]);
    }

    #[test]
    fn pairs_round_trip_and_cut_streams_are_refused() {
        let mut out = Vec::new();
        let big = vec![b'v'; 70_000];
        encode_pair(&mut out, b"REQUEST_METHOD", b"POST");
        encode_pair(&mut out, b"HTTP_X_BIG", &big);
        encode_pair(&mut out, b"EMPTY", b"");
        let decoded = decode_pairs(&out).expect("decodes");
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[0], (b"REQUEST_METHOD".to_vec(), b"POST".to_vec()));
        assert_eq!(decoded[1].1, big);
        assert_eq!(decoded[2], (b"EMPTY".to_vec(), Vec::new()));
        for cut in [1, 3, out.len() - 1] {
            assert!(decode_pairs(&out[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_pairs(&[0x80, 0]).is_err());
    }

    #[test]
    fn a_request_is_begin_params_and_stdin() {
        let params = vec![("REQUEST_METHOD".to_string(), "GET".to_string())];
        let bytes = encode_request(1, &params, b"body");
        let split = records(&bytes);
        let kinds: Vec<u8> = split.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [BEGIN_REQUEST, PARAMS, PARAMS, STDIN, STDIN]);
        assert_eq!(split[0].content, [0, 1, KEEP_CONN, 0, 0, 0, 0, 0]);
        assert_eq!(
            decode_pairs(&split[1].content).expect("pairs"),
            vec![(b"REQUEST_METHOD".to_vec(), b"GET".to_vec())]
        );
        assert!(split[2].content.is_empty());
        assert_eq!(split[3].content, b"body");
        assert!(split[4].content.is_empty());
        assert!(split.iter().all(|r| r.request_id == 1));
        let no_body = records(&encode_request(1, &[], b""));
        let kinds: Vec<u8> = no_body.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [BEGIN_REQUEST, PARAMS, STDIN]);
    }

    #[test]
    fn property_decoding_garbage_pairs_never_panics() {
        let mut seed = Vec::new();
        encode_pair(&mut seed, b"REQUEST_METHOD", b"GET");
        encode_pair(&mut seed, b"HTTP_X", &[b'v'; 200]);
        let mut rng = crate::prop::Rng::new(0xfc61);
        for _ in 0..20_000 {
            let mut input = seed.clone();
            for _ in 0..1 + rng.below(6) {
                crate::prop::mutate(&mut rng, &mut input);
            }
            if let Ok(pairs) = decode_pairs(&input) {
                assert!(pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= input.len());
            }
        }
    }
}
