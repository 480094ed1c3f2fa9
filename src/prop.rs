//! Test support for property tests (the project's fuzz harness, run by `cargo test`): a
//! small seeded generator and byte-level mutations, so failures replay from the seed.

/// xorshift64*: fast, seeded, good enough to explore inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments that tend to reach interesting paths of parsers.
const FRAGMENTS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"\xff",
    b"\x00",
    b"%",
    b"%2e%2e",
    b"../",
    b"/",
    b"\r\n",
    b"\n\n",
    b"=",
    b"@every ",
    b"CRON_TZ=",
    b"*/0",
    b"\"name\"",
    b"\"code\"",
    b"\"trigger\"",
    b"\xe2\x82",
];

/// One random change: flip, insert, delete, splice a fragment, truncate or duplicate.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let at = rng.below(input.len() + 1);
    match rng.below(6) {
        0 if !input.is_empty() => {
            let i = at.min(input.len() - 1);
            input[i] ^= 1 << rng.below(8);
        }
        1 => input.insert(at, rng.next_u64() as u8),
        2 if at < input.len() => {
            input.remove(at);
        }
        3 => {
            let fragment = rng.pick(FRAGMENTS);
            input.splice(at..at, fragment.iter().copied());
        }
        4 => input.truncate(at),
        _ => {
            let end = (at + rng.below(32)).min(input.len());
            let copy = input[at.min(end)..end].to_vec();
            input.splice(at..at, copy);
        }
    }
}
