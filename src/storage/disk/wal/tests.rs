//! The disk engine's log on segment files, through the engine's own calls: what a crash leaves
//! (a torn last frame, a corrupt one in the middle), segments rolling over, truncations removing
//! them, a reseed; and random sequences of log calls answered as the memory engine answers them.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::super::DiskEngine;
use super::frame;
use crate::storage::memory::MemoryEngine;
use crate::storage::rows::RowMap;
use crate::storage::{ByteLog, Engine, LogCommit, RowImageStore, StorageError, StoredRecord, LOG_DIR};

/// Segments small enough that a few commits fill one.
const SMALL: u64 = 4096;

fn rec(lsn: u64, bytes: &[u8]) -> StoredRecord {
    (lsn, bytes.to_vec().into())
}

fn commit(records: Vec<StoredRecord>) -> LogCommit {
    LogCommit { records, ..Default::default() }
}

fn all(log: &impl ByteLog, owner: &str) -> Vec<(u64, Vec<u8>)> {
    log.read_log(owner, 0, usize::MAX).expect("read").into_iter().map(|r| (r.0, r.1.to_vec())).collect()
}

/// The segment files of `owner`'s log, in order.
fn segment_files(dir: &Path, owner: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join(LOG_DIR).join(owner))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    out.sort();
    out
}

/// Where `needle` is in the file at `path`.
fn find_in(path: &Path, needle: &[u8]) -> usize {
    let bytes = std::fs::read(path).expect("read");
    bytes.windows(needle.len()).position(|w| w == needle).expect("found")
}

/// Three commits of one record each, the last one's bytes `last`; the store closed.
fn three_commits(dir: &Path, last: &[u8]) {
    let e = DiskEngine::open(dir).expect("open");
    e.commit_log("p", commit(vec![rec(0, b"first record")])).expect("commit");
    e.commit_log("p", LogCommit { records: vec![rec(12, b"second record")], meta: vec![("flush".into(), 25)], ..Default::default() })
        .expect("commit");
    e.commit_log("p", commit(vec![rec(25, last)])).expect("commit");
    e.close();
}

#[test]
fn a_torn_last_frame_ends_the_log_and_the_next_commit_is_written_over_it() {
    for tear in ["cut short", "overwritten"] {
        let dir = tempfile::tempdir().expect("temp dir");
        three_commits(dir.path(), b"the third record, torn");
        let seg = &segment_files(dir.path(), "p")[0];
        let at = find_in(seg, b"the third record, torn");
        let mut bytes = std::fs::read(seg).expect("read");
        match tear {
            // Its second half never reached the disk.
            "cut short" => bytes[at + 10..].iter_mut().for_each(|b| *b = 0),
            // Its last bytes are something else.
            _ => bytes[at + 10..at + 30].iter_mut().for_each(|b| *b = 0xEE),
        }
        std::fs::write(seg, &bytes).expect("write");
        let e = DiskEngine::open(dir.path()).expect("open");
        assert_eq!(all(&e, "p"), vec![(0, b"first record".to_vec()), (12, b"second record".to_vec())], "{tear}");
        assert_eq!(e.get_log_meta("p", "flush").expect("meta"), Some(25));
        e.commit_log("p", commit(vec![rec(25, b"again")])).expect("commit");
        e.close();
        let e = DiskEngine::open(dir.path()).expect("reopen");
        assert_eq!(e.log_bounds("p").expect("bounds"), Some((0, 25, 5)), "{tear}");
        assert_eq!(all(&e, "p")[2], (25, b"again".to_vec()));
    }
}

#[test]
fn a_corrupt_frame_in_the_middle_of_the_log_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    three_commits(dir.path(), b"third record");
    let seg = &segment_files(dir.path(), "p")[0];
    let at = find_in(seg, b"second record");
    let mut bytes = std::fs::read(seg).expect("read");
    bytes[at] ^= 0x20;
    std::fs::write(seg, &bytes).expect("write");
    let e = DiskEngine::open(dir.path()).expect("the store opens");
    let err = e.log_bounds("p").expect_err("the owner's log is refused");
    assert!(matches!(err, StorageError::CorruptWal { .. }), "{err}");
    assert!(err.to_string().contains(&seg.display().to_string()), "names the file: {err}");
}

#[test]
fn a_segment_ending_before_where_the_next_one_says_it_did_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    many_commits(dir.path()).1.close();
    // The last frame of the first segment: nothing valid follows it there, but the second
    // segment's head says where the first one's frames ended.
    let first = &segment_files(dir.path(), "p")[0];
    let mut bytes = std::fs::read(first).expect("read");
    let (mut at, mut crc, mut last) = (0, frame::seed(1), 0);
    while let frame::Found::Frame { crc: c, next, .. } = frame::find(&bytes, at, crc) {
        (last, at, crc) = (at, next, c);
    }
    bytes[last + frame::HEADER + 2] ^= 1;
    std::fs::write(first, &bytes).expect("write");
    let e = DiskEngine::open_with_segments(dir.path(), SMALL).expect("the store opens");
    let err = e.log_bounds("p").expect_err("the owner's log is refused");
    assert!(err.to_string().contains(&first.display().to_string()), "names the file: {err}");
}

/// Commits of records of 1 to 1,500 bytes (and one larger than a segment) over segments of
/// [`SMALL`] bytes: (what was committed, the engine).
fn many_commits(dir: &Path) -> (Vec<(u64, Vec<u8>)>, DiskEngine) {
    let e = DiskEngine::open_with_segments(dir, SMALL).expect("open");
    let mut written = Vec::new();
    let mut lsn = 0;
    for i in 0..60u64 {
        let records: Vec<Vec<u8>> = if i == 30 {
            vec![vec![b'B'; 3 * SMALL as usize]]
        } else {
            (0..1 + i % 3).map(|j| vec![b'a' + (i % 26) as u8; (1 + (i * 37 + j * 11) % 1500) as usize]).collect()
        };
        let mut c = commit(Vec::new());
        for bytes in records {
            c.records.push(rec(lsn, &bytes));
            written.push((lsn, bytes.clone()));
            lsn += bytes.len() as u64;
        }
        c.meta.push(("flush".into(), lsn));
        e.commit_log("p", c).expect("commit");
    }
    (written, e)
}

#[test]
fn commits_over_many_segments_come_back_after_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (written, e) = many_commits(dir.path());
    let end = written.last().map(|r| r.0 + r.1.len() as u64);
    assert_eq!(all(&e, "p"), written);
    e.close();
    let files = segment_files(dir.path(), "p");
    assert!(files.len() > 10, "rolled over: {files:?}");
    assert!(files.iter().any(|f| std::fs::metadata(f).expect("size").len() > 3 * SMALL), "the large commit got a segment of its own");
    let e = DiskEngine::open_with_segments(dir.path(), SMALL).expect("reopen");
    assert_eq!(all(&e, "p"), written);
    assert_eq!(e.get_log_meta("p", "flush").expect("meta"), end);
    // Reads from inside the log, bounded, as the memory engine answers.
    let mem = MemoryEngine::default();
    mem.commit_log("p", commit(written.iter().map(|(l, b)| rec(*l, b)).collect())).expect("commit");
    for (from, max) in [(0, 1), (5_000, 10_000), (written[40].0 + 1, 1), (u64::MAX, 1)] {
        assert_eq!(e.read_log("p", from, max).expect("read"), mem.read_log("p", from, max).expect("read"), "from {from}");
    }
}

#[test]
fn truncating_the_start_removes_the_segments_before_it_and_keeps_reads_right() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (written, e) = many_commits(dir.path());
    let before = segment_files(dir.path(), "p").len();
    // Inside a commit of several records, well into the log.
    let cut = written.iter().position(|r| r.0 > 20_000).expect("a record past 20,000");
    let at = written[cut].0 + 1;
    let kept: Vec<_> = written.iter().filter(|r| r.0 >= at).cloned().collect();
    assert_eq!(e.truncate_log("p", at).expect("truncate"), written.len() - kept.len());
    assert_eq!(all(&e, "p"), kept);
    let after = segment_files(dir.path(), "p").len();
    assert!(after < before, "segments removed: {before} -> {after}");
    e.close();
    let e = DiskEngine::open_with_segments(dir.path(), SMALL).expect("reopen");
    assert_eq!(all(&e, "p"), kept, "the truncation was written when the log closed");
    assert_eq!(e.log_bounds("p").expect("bounds").map(|b| b.0), Some(kept[0].0));
    // A commit's own truncation of the start removes segments too.
    let at = kept[kept.len() - 3].0;
    let end = written.last().map_or(0, |r| r.0 + r.1.len() as u64);
    e.commit_log("p", LogCommit { records: vec![rec(end, b"z")], truncate_before: Some(at), ..Default::default() }).expect("commit");
    let left = segment_files(dir.path(), "p").len();
    assert!(left <= 3, "{after} segments -> {left}");
    assert_eq!(e.log_bounds("p").expect("bounds"), Some((at, end, 1)));
}

#[test]
fn truncating_the_end_inside_a_commit_and_across_segments_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (written, e) = many_commits(dir.path());
    // A record boundary inside a commit of three (commit 59: i % 3 == 2).
    let from = written[written.len() - 2].0;
    e.commit_log("p", LogCommit { truncate_from: Some(from), ..Default::default() }).expect("commit");
    assert_eq!(all(&e, "p"), written[..written.len() - 2]);
    // Far back, many segments before the current one; then the log goes on from there.
    let back = written[20].0;
    let replaced = LogCommit { records: vec![rec(back, b"new")], truncate_from: Some(back), ..Default::default() };
    e.commit_log("p", replaced).expect("commit");
    let mut expected: Vec<_> = written[..20].to_vec();
    expected.push((back, b"new".to_vec()));
    assert_eq!(all(&e, "p"), expected);
    e.close();
    let e = DiskEngine::open_with_segments(dir.path(), SMALL).expect("reopen");
    assert_eq!(all(&e, "p"), expected);
    assert_eq!(e.log_bounds("p").expect("bounds"), Some((0, back, 3)));
    // A record not at the end is refused, and changes nothing.
    let err = e.commit_log("p", commit(vec![rec(back, b"x")])).expect_err("refused");
    assert!(matches!(err, StorageError::LogOutOfOrder { .. }), "{err}");
    assert_eq!(all(&e, "p"), expected);
}

#[test]
fn a_reseed_replaces_the_log_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, e) = many_commits(dir.path());
    assert_eq!(e.replace_rows("p", &RowMap::default(), 90_000, &[("flush".into(), 90_000)]).expect("reseed"), 1);
    assert_eq!(e.log_bounds("p").expect("bounds"), None);
    assert_eq!(segment_files(dir.path(), "p").len(), 1, "older segments removed");
    e.close();
    let e = DiskEngine::open_with_segments(dir.path(), SMALL).expect("reopen");
    assert_eq!(e.log_bounds("p").expect("bounds"), None);
    assert_eq!(e.get_log_meta("p", "flush").expect("meta"), Some(90_000));
    assert_eq!(e.get_log_meta("p", crate::storage::row_images::ROWS_EPOCH).expect("meta"), Some(1));
    e.commit_log("p", commit(vec![rec(90_000, b"after")])).expect("commit");
    e.close();
    let e = DiskEngine::open_with_segments(dir.path(), SMALL).expect("reopen");
    assert_eq!(all(&e, "p"), vec![(90_000, b"after".to_vec())]);
}

/// One step of a random sequence.
#[derive(Debug, Clone)]
enum Step {
    /// Records of these sizes (a size over 60,000 leaves a gap of 7 before its record), a meta
    /// key and value, and truncations at these points of the log (per mille of its span).
    Commit { sizes: Vec<usize>, meta: Option<(u8, u64)>, truncate_from: Option<u16>, truncate_before: Option<u16> },
    Truncate(u16),
    Reseed(u64),
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let size = prop_oneof![8 => 0usize..1200, 1 => 5000usize..9000, 1 => 60_001usize..60_100];
    let point = prop::option::weighted(0.15, 0u16..1100);
    prop_oneof![
        6 => (prop::collection::vec(size, 0..4), prop::option::of((0u8..3, 0u64..1000)), point.clone(), point)
            .prop_map(|(sizes, meta, truncate_from, truncate_before)| Step::Commit { sizes, meta, truncate_from, truncate_before }),
        1 => (0u16..1100).prop_map(Step::Truncate),
        1 => (0u64..200_000).prop_map(Step::Reseed),
        1 => Just(Step::Reopen),
    ]
}

/// The lsn `per_mille` of the way through the memory log's span (past its end above 1000).
fn point(mem: &MemoryEngine, per_mille: u16) -> u64 {
    let (first, end) = match mem.log_bounds("p").expect("bounds") {
        Some((first, last, len)) => (first, last + len as u64),
        None => (0, 0),
    };
    first + (end - first) * u64::from(per_mille) / 1000
}

fn same_answers(disk: &DiskEngine, mem: &MemoryEngine, probe: u16) {
    assert_eq!(disk.log_bounds("p").expect("bounds"), mem.log_bounds("p").expect("bounds"));
    assert_eq!(all(disk, "p"), all(mem, "p"));
    let from = point(mem, probe);
    for max in [1, 3000] {
        assert_eq!(disk.read_log("p", from, max).expect("read"), mem.read_log("p", from, max).expect("read"));
    }
    for key in ["k0", "k1", "k2", crate::storage::row_images::ROWS_EPOCH] {
        assert_eq!(disk.get_log_meta("p", key).expect("meta"), mem.get_log_meta("p", key).expect("meta"), "{key}");
    }
}

fn run(steps: &[Step]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut disk = DiskEngine::open_with_segments(dir.path(), SMALL).expect("open");
    let mem = MemoryEngine::default();
    let mut next = 0u64;
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Commit { sizes, meta, truncate_from, truncate_before } => {
                let truncate_from = truncate_from.map(|p| point(&mem, p));
                // Records go after what the truncation keeps.
                let kept_end = mem.read_log("p", 0, usize::MAX).expect("read").into_iter().filter(|r| truncate_from.is_none_or(|x| r.0 < x)).last();
                let mut lsn = kept_end.map_or(next, |r| r.0 + r.1.len() as u64).max(truncate_from.unwrap_or(0));
                let mut records = Vec::new();
                for &size in sizes {
                    if size > 60_000 {
                        lsn += 7;
                    }
                    let len = size % 60_000;
                    records.push(rec(lsn, &vec![(lsn % 251) as u8; len]));
                    lsn += len as u64;
                }
                next = next.max(lsn);
                let c = LogCommit {
                    records,
                    meta: meta.iter().map(|(k, v)| (format!("k{k}"), *v)).collect(),
                    truncate_from,
                    truncate_before: truncate_before.map(|p| point(&mem, p)),
                };
                mem.commit_log("p", c.clone()).expect("commit");
                disk.commit_log("p", c).expect("commit");
            }
            Step::Truncate(p) => {
                let at = point(&mem, *p);
                assert_eq!(disk.truncate_log("p", at).expect("truncate"), mem.truncate_log("p", at).expect("truncate"));
            }
            Step::Reseed(lsn) => {
                let meta = [("k0".to_string(), *lsn)];
                let rows = RowMap::default();
                assert_eq!(disk.replace_rows("p", &rows, *lsn, &meta).expect("reseed"), mem.replace_rows("p", &rows, *lsn, &meta).expect("reseed"));
                next = *lsn;
            }
            Step::Reopen => {
                disk.close();
                disk = DiskEngine::open_with_segments(dir.path(), SMALL).expect("reopen");
            }
        }
        same_answers(&disk, &mem, (i * 97 % 1100) as u16);
    }
    disk.close();
    let disk = DiskEngine::open_with_segments(dir.path(), SMALL).expect("reopen");
    same_answers(&disk, &mem, 500);
}

#[test]
fn random_commits_truncations_reseeds_and_reopens_answer_as_the_memory_engine() {
    // A fixed seed: the same sequences every run.
    let config = Config { cases: 40, rng_seed: RngSeed::Fixed(16), failure_persistence: None, ..Config::default() };
    proptest!(config, |(steps in prop::collection::vec(step(), 1..30))| run(&steps));
}
