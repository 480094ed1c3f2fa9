//! Unpacking real archives made here with the format crates' writers, hostile ones patched
//! by hand where no writer would make them.

use super::*;
use std::io::Write;

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("golambda-package-{}", crate::ids::new_id()))
}

const LIMITS: Limits = Limits {
    entries: 100,
    unpacked: 1 << 20,
};

/// A zip of `(name, bytes, mode)`; a name ending in `/` is a folder.
fn zip_of(entries: &[(&str, &[u8], u32)], method: ::zip::CompressionMethod) -> Vec<u8> {
    let mut writer = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, mode) in entries {
        let options = ::zip::write::SimpleFileOptions::default()
            .compression_method(method)
            .unix_permissions(*mode);
        if name.ends_with('/') {
            writer.add_directory(*name, options).unwrap();
        } else {
            writer.start_file(*name, options).unwrap();
            writer.write_all(bytes).unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

fn stored_zip(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    zip_of(entries, ::zip::CompressionMethod::Stored)
}

/// A tar.gz of headers made by `each`, each with its data.
fn targz_with(entries: Vec<(::tar::Header, Vec<u8>)>) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = ::tar::Builder::new(gz);
    for (header, data) in entries {
        builder.append(&header, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A header named `name` as written, past the checks `tar::Builder` would make.
fn header(name: &str, kind: ::tar::EntryType, size: u64, mode: u32, mtime: u64) -> ::tar::Header {
    let mut header = ::tar::Header::new_gnu();
    let bytes = name.as_bytes();
    header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_cksum();
    header
}

fn targz_of(entries: &[(&str, &[u8], u32)], mtime: u64) -> Vec<u8> {
    targz_with(
        entries
            .iter()
            .map(|(name, bytes, mode)| {
                let kind = if name.ends_with('/') {
                    ::tar::EntryType::Directory
                } else {
                    ::tar::EntryType::Regular
                };
                (
                    header(name, kind, bytes.len() as u64, *mode, mtime),
                    bytes.to_vec(),
                )
            })
            .collect(),
    )
}

fn refused(code: &[u8], limits: Limits) -> Refusal {
    let dir = scratch();
    let refusal = unpack(code, Kind::of(code), &dir, limits).expect_err("refused");
    assert!(!dir.exists(), "a refused archive left {}", dir.display());
    refusal
}

fn entry_reason(refusal: Refusal) -> (String, String) {
    match refusal {
        Refusal::Entry { entry, reason } => (entry, reason),
        other => panic!("not an entry refusal: {other}"),
    }
}

#[test]
fn kinds_are_told_by_content() {
    assert_eq!(Kind::of(b"package main"), Kind::Source);
    assert_eq!(Kind::of(&stored_zip(&[("a", b"x", 0o644)])), Kind::Zip);
    assert_eq!(Kind::of(&targz_of(&[("a", b"x", 0o644)], 0)), Kind::TarGz);
}

#[test]
fn the_same_files_in_any_archive_are_the_same_package() {
    let main = b"package main\nfunc main() {}\n".as_slice();
    let run = b"#!/bin/sh\n".as_slice();
    let zipped = zip_of(
        &[
            ("app/", b"", 0o755),
            ("app/main.go", main, 0o644),
            ("app/bin/run.sh", run, 0o755),
        ],
        ::zip::CompressionMethod::Deflated,
    );
    let tarred = targz_of(
        &[("app/bin/run.sh", run, 0o755), ("app/main.go", main, 0o600)],
        1_700_000_000,
    );
    let tarred_later = targz_of(
        &[("app/main.go", main, 0o644), ("app/bin/run.sh", run, 0o700)],
        1_800_000_000,
    );
    let mut digests = Vec::new();
    for code in [&zipped, &tarred, &tarred_later] {
        let dir = scratch();
        let unpacked = unpack(code, Kind::of(code), &dir, LIMITS).unwrap();
        assert_eq!(
            unpacked.root,
            dir.join("app"),
            "the one top folder is stripped"
        );
        let paths: Vec<&str> = unpacked.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["bin/run.sh", "main.go"]);
        assert!(unpacked.files[0].executable && !unpacked.files[1].executable);
        assert_eq!(std::fs::read(unpacked.root.join("main.go")).unwrap(), main);
        digests.push(unpacked.digest);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    let changed = targz_of(&[("app/main.go", b"package main\n", 0o644)], 0);
    let dir = scratch();
    let other = unpack(&changed, Kind::TarGz, &dir, LIMITS).unwrap();
    assert_ne!(other.digest, digests[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_top_folders_are_kept() {
    let code = stored_zip(&[("a/x.go", b"1", 0o644), ("b/y.go", b"2", 0o644)]);
    let dir = scratch();
    let unpacked = unpack(&code, Kind::Zip, &dir, LIMITS).unwrap();
    assert_eq!(unpacked.root, dir);
    assert_eq!(unpacked.files.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn escaping_names_are_refused_naming_the_entry() {
    for name in ["/etc/cron.d/x", "../../x", "a/../../x", "C:/x"] {
        for code in [
            stored_zip(&[("ok.go", b"1", 0o644), (name, b"x", 0o644)]),
            targz_of(&[("ok.go", b"1", 0o644), (name, b"x", 0o644)], 0),
        ] {
            let (entry, reason) = entry_reason(refused(&code, LIMITS));
            assert_eq!(entry, name, "{reason}");
        }
    }
}

#[test]
fn links_devices_and_fifos_are_refused() {
    let mut writer = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .add_symlink(
            "link",
            "/etc/passwd",
            ::zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    let zip_link = writer.finish().unwrap().into_inner();
    let (entry, reason) = entry_reason(refused(&zip_link, LIMITS));
    assert_eq!(entry, "link");
    assert!(reason.contains("symbolic link"), "{reason}");
    for (kind, said) in [
        (::tar::EntryType::Symlink, "symbolic link"),
        (::tar::EntryType::Link, "hard link"),
        (::tar::EntryType::Fifo, "FIFO"),
        (::tar::EntryType::Char, "device"),
        (::tar::EntryType::Block, "device"),
    ] {
        let mut link = header("odd", kind, 0, 0o644, 0);
        if matches!(kind, ::tar::EntryType::Symlink | ::tar::EntryType::Link) {
            link.set_link_name("/etc/passwd").unwrap();
            link.set_cksum();
        }
        let code = targz_with(vec![(link, Vec::new())]);
        let (entry, reason) = entry_reason(refused(&code, LIMITS));
        assert_eq!(entry, "odd");
        assert!(reason.contains(said), "{kind:?}: {reason}");
    }
}

#[test]
fn duplicates_and_case_collisions_are_refused() {
    let twice = targz_of(&[("a.go", b"1", 0o644), ("a.go", b"2", 0o644)], 0);
    let (entry, reason) = entry_reason(refused(&twice, LIMITS));
    assert_eq!(entry, "a.go");
    assert!(reason.contains("twice"), "{reason}");
    for code in [
        stored_zip(&[("Main.go", b"1", 0o644), ("main.go", b"2", 0o644)]),
        targz_of(&[("Main.go", b"1", 0o644), ("main.go", b"2", 0o644)], 0),
    ] {
        let (entry, reason) = entry_reason(refused(&code, LIMITS));
        assert_eq!(entry, "main.go");
        assert!(reason.contains("ignoring case"), "{reason}");
    }
}

#[test]
fn too_many_entries_are_413() {
    let limits = Limits {
        entries: 5,
        ..LIMITS
    };
    let files: Vec<(String, Vec<u8>)> = (0..6).map(|i| (format!("f{i}"), vec![b'x'])).collect();
    let entries: Vec<(&str, &[u8], u32)> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice(), 0o644))
        .collect();
    for code in [stored_zip(&entries), targz_of(&entries, 0)] {
        assert!(matches!(
            refused(&code, limits),
            Refusal::TooManyEntries { limit: 5 }
        ));
    }
}

#[test]
fn bombs_stop_at_the_unpacked_bound() {
    let zeros = vec![0u8; 4 << 20];
    let zip_bomb = zip_of(
        &[("zeros", &zeros, 0o644)],
        ::zip::CompressionMethod::Deflated,
    );
    assert!(zip_bomb.len() < 64 << 10, "{}", zip_bomb.len());
    assert!(matches!(
        refused(&zip_bomb, LIMITS),
        Refusal::TooLarge { limit } if limit == 1 << 20
    ));
    let tar_bomb = targz_of(&[("zeros", &zeros, 0o644)], 0);
    assert!(matches!(
        refused(&tar_bomb, LIMITS),
        Refusal::TooLarge { .. }
    ));
}

/// Every occurrence of the little-endian `from` in `code` becomes `to`.
fn patch_u32(code: &mut [u8], from: u32, to: u32) -> usize {
    let (from, to) = (from.to_le_bytes(), to.to_le_bytes());
    let mut count = 0;
    for i in 0..code.len().saturating_sub(3) {
        if code[i..i + 4] == from {
            code[i..i + 4].copy_from_slice(&to);
            count += 1;
        }
    }
    count
}

#[test]
fn a_zip_whose_declared_sizes_lie_is_refused_while_inflating() {
    // Declares 1,000 bytes (small enough for the bound) for 2 MiB of zeros.
    let zeros = vec![0u8; 2 << 20];
    let mut code = zip_of(
        &[("zeros", &zeros, 0o644)],
        ::zip::CompressionMethod::Deflated,
    );
    assert!(patch_u32(&mut code, 2 << 20, 1_000) >= 2, "sizes not found");
    let (entry, reason) = entry_reason(refused(&code, LIMITS));
    assert_eq!(entry, "zeros");
    assert!(reason.contains("declared size"), "{reason}");
}

#[test]
fn a_zip_whose_data_does_not_match_its_checksum_is_refused() {
    let mut code = stored_zip(&[("a.go", b"package main // original", 0o644)]);
    let at = code
        .windows(8)
        .position(|w| w == b"original")
        .expect("stored data");
    code[at] = b'X';
    let (entry, reason) = entry_reason(refused(&code, LIMITS));
    assert_eq!(entry, "a.go");
    assert!(reason.to_lowercase().contains("checksum"), "{reason}");
}

#[test]
fn a_damaged_archive_is_malformed() {
    let mut code = targz_of(&[("a.go", b"1", 0o644)], 0);
    code.truncate(code.len() / 2);
    assert!(matches!(refused(&code, LIMITS), Refusal::Malformed { .. }));
    let code = b"PK\x03\x04 not really a zip".to_vec();
    assert!(matches!(refused(&code, LIMITS), Refusal::Malformed { .. }));
}

#[test]
fn a_zip_naming_one_file_twice_is_refused() {
    let mut code = stored_zip(&[("a.go", b"1", 0o644), ("b.go", b"2", 0o644)]);
    for i in 0..code.len() - 3 {
        if &code[i..i + 4] == b"b.go" {
            code[i] = b'a';
        }
    }
    let refusal = refused(&code, LIMITS);
    let text = refusal.to_string();
    assert!(text.contains("a.go"), "{text}");
}

#[test]
fn a_directory_claiming_too_many_entries_is_refused_before_it_is_read() {
    let mut code = stored_zip(&[("a.go", b"1", 0o644)]);
    let end = code
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .expect("end record");
    for field in [end + 8, end + 10] {
        code[field..field + 2].copy_from_slice(&60_000u16.to_le_bytes());
    }
    assert!(matches!(
        refused(&code, LIMITS),
        Refusal::TooManyEntries { limit: 100 }
    ));
}

#[test]
fn a_zip64_record_claiming_millions_of_entries_is_refused_before_it_is_read() {
    // A plain end record that says one entry, and before it a zip64 record (and its
    // locator) that says 30 million, with the directory 31 MB in: a reader that sizes its
    // directory by the zip64 record would ask for gigabytes.
    let padding = vec![0u8; 31_000_000];
    let mut code = stored_zip(&[("pad", &padding, 0o644)]);
    let end = code
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .expect("end record");
    let directory = u64::from(u32::from_le_bytes(
        code[end + 16..end + 20].try_into().unwrap(),
    ));
    let mut record = b"PK\x06\x06".to_vec();
    record.extend_from_slice(&44u64.to_le_bytes());
    record.extend_from_slice(&45u16.to_le_bytes());
    record.extend_from_slice(&45u16.to_le_bytes());
    record.extend_from_slice(&[0u8; 8]);
    record.extend_from_slice(&30_000_000u64.to_le_bytes());
    record.extend_from_slice(&30_000_000u64.to_le_bytes());
    record.extend_from_slice(&46u64.to_le_bytes());
    record.extend_from_slice(&directory.to_le_bytes());
    let mut locator = b"PK\x06\x07".to_vec();
    locator.extend_from_slice(&0u32.to_le_bytes());
    locator.extend_from_slice(&(end as u64).to_le_bytes());
    locator.extend_from_slice(&1u32.to_le_bytes());
    let tail = code.split_off(end);
    code.extend_from_slice(&record);
    code.extend_from_slice(&locator);
    code.extend_from_slice(&tail);
    assert!(matches!(
        refused(&code, LIMITS),
        Refusal::TooManyEntries { limit: 100 }
    ));
    // The plain record's count of this disk counts too.
    let mut code = stored_zip(&[("a.go", b"1", 0o644)]);
    let end = code
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .expect("end record");
    code[end + 8..end + 10].copy_from_slice(&60_000u16.to_le_bytes());
    assert!(matches!(
        refused(&code, LIMITS),
        Refusal::TooManyEntries { limit: 100 }
    ));
}

#[test]
fn an_archive_of_the_current_folder_is_its_files() {
    // What `tar czf f.tgz .` writes: the folder itself as `./`, then `./name`s.
    let code = targz_of(
        &[
            ("./", b"", 0o755),
            ("./main.py", b"print(1)", 0o644),
            ("./lib/", b"", 0o755),
            ("./lib/m.py", b"x = 1", 0o644),
        ],
        0,
    );
    let dir = scratch();
    let unpacked = unpack(&code, Kind::TarGz, &dir, LIMITS).unwrap();
    assert_eq!(unpacked.root, dir);
    let paths: Vec<&str> = unpacked.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["lib/m.py", "main.py"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
