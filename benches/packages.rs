//! Checking and unpacking packages: a 32 MiB archive of 10,000 entries, as a zip and as a
//! tar.gz, unpacked by `golambda::packages::unpack` with the limits of a default server
//! (median of 5 runs, into tmpfs and onto the disk of the temporary folder), and the peak
//! memory the unpacking adds for archives of 1/8, 1/2 and all of that, made before anything
//! is measured; beside them, the floor of writing the same files plainly. Prints Markdown
//! rows.

#[path = "../tests/harness/archives.rs"]
mod archives;

use archives::noise;
use golambda::packages::{self, Kind, Limits};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const ENTRIES: usize = 10_000;
/// Runs of each unpacking; the median is shown.
const RUNS: usize = 5;
/// Random bytes do not compress: 10,000 of these and their headers make about 32 MiB.
const FILE_SIZE: usize = 3_200;

fn files(count: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            (
                format!("pkg/dir{}/file{i}.dat", i % 100),
                noise(i as u64, FILE_SIZE),
            )
        })
        .collect()
}

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in files {
        writer.start_file(name.as_str(), options).expect("entry");
        writer.write_all(bytes).expect("data");
    }
    writer.finish().expect("zip").into_inner()
}

fn targz_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .expect("entry");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn unpack_once(base: &Path, code: &[u8], kind: Kind, entries: usize) -> f64 {
    let dir = base.join(format!("golambda-package-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // What removing the last run left for the disk to do is done before the clock starts.
    sync();
    let limits = Limits::for_package(32 << 20);
    let started = Instant::now();
    let unpacked = packages::unpack(code, kind, &dir, limits).expect("unpacked");
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(unpacked.files.len(), entries, "every file unpacked");
    std::fs::remove_dir_all(&dir).expect("clean up");
    elapsed
}

/// The floor: the same files written with `std::fs::write`, nothing read or checked.
fn write_plainly(base: &Path, files: &[(String, Vec<u8>)]) -> f64 {
    let dir = base.join(format!("golambda-package-floor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    sync();
    let started = Instant::now();
    for (name, bytes) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("folder");
        }
        std::fs::write(&path, bytes).expect("file");
    }
    let elapsed = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir).expect("clean up");
    elapsed
}

fn sync() {
    let _ = std::process::Command::new("sync").status();
}

fn main() {
    let all = files(ENTRIES);
    let archives: Vec<(&str, Kind, Vec<Vec<u8>>)> = vec![
        (
            "zip",
            Kind::Zip,
            vec![
                zip_of(&all[..ENTRIES / 8]),
                zip_of(&all[..ENTRIES / 2]),
                zip_of(&all),
            ],
        ),
        (
            "tar.gz",
            Kind::TarGz,
            vec![
                targz_of(&all[..ENTRIES / 8]),
                targz_of(&all[..ENTRIES / 2]),
                targz_of(&all),
            ],
        ),
    ];
    let floor_files = all;
    // In memory (the unpacker's own cost) and on the disk the temporary folder is on.
    let mut bases = vec![(
        "disk (temp folder)",
        std::env::var_os("BENCH_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir),
    )];
    if Path::new("/dev/shm").is_dir() {
        bases.insert(0, ("tmpfs (/dev/shm)", PathBuf::from("/dev/shm")));
    }
    println!(
        "| unpacking a package | written to | archive | entries | time (median of {RUNS}) | peak memory added |"
    );
    println!("|---|---|---|---|---|---|");
    for (place, base) in &bases {
        let mut floor: Vec<f64> = (0..RUNS)
            .map(|_| write_plainly(base, &floor_files))
            .collect();
        floor.sort_by(f64::total_cmp);
        println!(
            "| floor: the same {ENTRIES} files written with std::fs::write, nothing checked | {place} | | {ENTRIES} | {:.0} ms | |",
            floor[RUNS / 2] * 1000.0
        );
        for (label, kind, codes) in &archives {
            for (code, entries) in codes.iter().zip([ENTRIES / 8, ENTRIES / 2, ENTRIES]) {
                assert!(code.len() <= 32 << 20, "{label}: {} bytes", code.len());
                // The peak is measured from here: writing 5 to clear_refs resets it to now.
                let _ = std::fs::write("/proc/self/clear_refs", "5");
                let before = rss_kib();
                let mut times: Vec<f64> = (0..RUNS)
                    .map(|_| unpack_once(base, code, *kind, entries))
                    .collect();
                times.sort_by(f64::total_cmp);
                let added = peak_rss_kib().saturating_sub(before);
                println!(
                    "| {label} | {place} | {:.1} MiB | {entries} | {:.0} ms | {:.1} MiB |",
                    code.len() as f64 / (1 << 20) as f64,
                    times[RUNS / 2] * 1000.0,
                    added as f64 / 1024.0
                );
            }
        }
    }
}
