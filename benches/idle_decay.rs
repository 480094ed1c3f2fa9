//! What idling costs the work that follows it, on this machine: the same fixed work (one
//! thread reading and writing a 2 MiB buffer, about what a request touches) timed right
//! after the thread slept 0, 1, 10 and 40 ms, and after the same sleeps taken as 1 ms naps
//! (the thread wakes every millisecond, so its CPU never idles deeply). Where the work's
//! time grows with the sleep however it is taken, what slows it is its caches emptying
//! while it is away (other work on the host's cores), not the CPU's idle states: then
//! anything a server does around a run costs more the longer the run, and a busy-waiting
//! server would gain nothing. The sleeps take turns, one of each per round, so that all see
//! the machine alike.
//!
//! Usage: `cargo bench --bench idle_decay` (see scripts/bench.sh).

use std::hint::black_box;
use std::time::{Duration, Instant};

/// How much the work touches.
const BUFFER: usize = 2 << 20;
/// Rounds: one sample of each way of idling per round.
const ROUNDS: usize = 300;
const SLEEPS_MS: [u64; 4] = [0, 1, 10, 40];

/// Reads and writes a byte of each cache line of `buffer`, twice.
fn work(buffer: &mut [u8]) -> Duration {
    let started = Instant::now();
    let mut sum = 0u8;
    for _ in 0..2 {
        for line in buffer.chunks_mut(64) {
            sum = sum.wrapping_add(line[0]);
            line[0] = sum;
        }
    }
    black_box(sum);
    started.elapsed()
}

fn idle(ms: u64, in_naps: bool) {
    if ms == 0 {
        return;
    }
    if in_naps {
        for _ in 0..ms {
            std::thread::sleep(Duration::from_millis(1));
        }
    } else {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn p50(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let mut buffer = vec![1u8; BUFFER];
    let ways: Vec<(u64, bool)> = SLEEPS_MS
        .iter()
        .flat_map(|&ms| {
            let naps = (ms > 1).then_some((ms, true));
            std::iter::once((ms, false)).chain(naps)
        })
        .collect();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); ways.len()];
    for _ in 0..ROUNDS {
        for (i, &(ms, in_naps)) in ways.iter().enumerate() {
            idle(ms, in_naps);
            samples[i].push(work(&mut buffer));
        }
    }
    let base = p50(&mut samples[0]);
    println!("| idle before the work | work p50 | against no idling |");
    println!("|---|---|---|");
    for (i, &(ms, in_naps)) in ways.iter().enumerate() {
        let took = p50(&mut samples[i]);
        let how = match (ms, in_naps) {
            (0, _) => "none".to_string(),
            (_, false) => format!("{ms} ms asleep"),
            (_, true) => format!("{ms} ms in 1 ms naps"),
        };
        println!("| {how} | {took:.0} µs | {:.2}x |", took / base);
    }
}
