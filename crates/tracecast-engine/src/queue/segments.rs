//! The embedded queue's records on disk: per workspace, append-only segment files of
//! checksummed records. SQLite (`queue.db`) keeps the rest: workspace keys and heads, the dedup
//! index, cursors, counters, dead letters.
//!
//! Layout: `<queue file>-log/<workspace key>/<first seq, 20 digits>.seg`. A record is a 32-byte
//! header, then its body (the stored form, [`super::log_body`]):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | body length (u32) |
//! | 4..8 | CRC-32 of bytes 8..32 and the body (u32) |
//! | 8..16 | seq (u64) |
//! | 16..24 | received at, Unix ms (i64) |
//! | 24..32 | the workspace's cumulative byte count up to and including this record (u64) |
//!
//! All little-endian. A group of records is appended with one `write` and made durable with one
//! `fdatasync` before any of them is acknowledged; a segment rolls to a new file (and the
//! directory is synced) once it passes the segment size. Only the newest segment can end in a
//! torn record (a crash during a write, never acknowledged): opening cuts it at the last whole
//! record whose checksum holds. Truncation deletes whole segments once every record in them is
//! done; the newest segment stays.
//!
//! Compared with one SQLite row per record this writes each record once (no WAL frame and
//! checkpoint copy), with no B-tree to maintain and no per-row delete: see `bench/RESULTS.md`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub(super) const HEADER: usize = 32;

/// One record's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub len: u32,
    pub seq: u64,
    pub received_at_ms: i64,
    /// Cumulative bytes of the workspace's log up to and including this record.
    pub end_bytes: u64,
}

impl Header {
    fn parse(b: &[u8; HEADER]) -> (Header, u32) {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        (
            Header {
                len: u32_at(0),
                seq: u64_at(8),
                received_at_ms: u64_at(16) as i64,
                end_bytes: u64_at(24),
            },
            u32_at(4),
        )
    }
}

/// A record read back.
pub(super) struct RawRecord {
    pub header: Header,
    pub body: Vec<u8>,
}

/// Appends one record's header and body to `out`.
pub(super) fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    received_at_ms: i64,
    end_bytes: u64,
    body: &[u8],
) {
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&received_at_ms.to_le_bytes());
    h[24..32].copy_from_slice(&end_bytes.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[8..]);
    crc.update(body);
    h[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
}

fn checksum(h: &[u8; HEADER], body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[8..]);
    crc.update(body);
    crc.finalize()
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
    /// Offset of each record, in seq order from `first_seq`.
    offsets: Vec<u32>,
    /// Bytes of whole records.
    len: u64,
}

impl Segment {
    fn last_seq(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.first_seq + self.offsets.len() as u64 - 1)
    }

    /// The byte range of records `from..from + n` (seqs inside this segment).
    fn range(&self, from: u64, n: usize) -> (u64, u64) {
        let i = (from - self.first_seq) as usize;
        let start = self.offsets[i] as u64;
        let end = self.offsets.get(i + n).map_or(self.len, |o| *o as u64);
        (start, end)
    }
}

/// The newest segment's open file, for appends (the writer thread only).
struct Active {
    file: File,
    len: u64,
}

/// One workspace's segments.
pub(super) struct Segments {
    dir: PathBuf,
    segment_bytes: u64,
    /// `fdatasync` every append (the default). Off, an append is in the page cache when it
    /// returns: a process crash loses nothing, a power loss may.
    sync: bool,
    segments: Mutex<Vec<Segment>>,
    active: Mutex<Option<Active>>,
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Segments {
    /// Opens a workspace's segments (creating the directory), cutting a torn end off the newest
    /// one. Returns them with the last record's header, if any.
    pub fn open(
        dir: PathBuf,
        segment_bytes: u64,
        sync: bool,
    ) -> io::Result<(Segments, Option<Header>)> {
        // Prompts and responses: readable by tracecast's user only, like `queue.db`.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let mut firsts: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                firsts.push((first, path));
            }
        }
        firsts.sort();
        let mut segments = Vec::with_capacity(firsts.len());
        let mut last = None;
        let n = firsts.len();
        for (i, (first_seq, path)) in firsts.into_iter().enumerate() {
            let newest = i + 1 == n;
            let (offsets, len, seg_last) = scan(&path, first_seq, newest)?;
            if newest {
                let file = OpenOptions::new().write(true).open(&path)?;
                if file.metadata()?.len() != len {
                    tracing::warn!(segment = %path.display(), valid_bytes = len, "cutting a torn record off the queue log (a write interrupted by a crash; never acknowledged)");
                    file.set_len(len)?;
                    file.sync_all()?;
                }
            }
            if seg_last.is_some() {
                last = seg_last;
            }
            segments.push(Segment {
                first_seq,
                path,
                offsets,
                len,
            });
        }
        Ok((
            Segments {
                dir,
                segment_bytes,
                sync,
                segments: Mutex::new(segments),
                active: Mutex::new(None),
            },
            last,
        ))
    }

    /// Appends encoded records (`rel_offsets`: where each starts in `data`; their seqs follow
    /// on from `first_seq`) and syncs them to disk. On error nothing of `data` stays in the
    /// segment.
    pub fn append(&self, first_seq: u64, data: &[u8], rel_offsets: &[u32]) -> io::Result<()> {
        let mut active = self.active.lock().expect("poisoned");
        let roll = {
            let segs = self.segments.lock().expect("poisoned");
            match segs.last() {
                None => true,
                Some(s) => {
                    s.len >= self.segment_bytes
                        || s.last_seq().is_some_and(|l| l + 1 != first_seq)
                        || (s.offsets.is_empty() && s.first_seq != first_seq)
                }
            }
        };
        if roll {
            let path = self.dir.join(format!("{first_seq:020}.seg"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&path)?;
            sync_dir(&self.dir)?;
            self.segments.lock().expect("poisoned").push(Segment {
                first_seq,
                path,
                offsets: Vec::new(),
                len: 0,
            });
            *active = Some(Active { file, len: 0 });
        }
        if active.is_none() {
            let segs = self.segments.lock().expect("poisoned");
            let s = segs.last().expect("a segment");
            let file = OpenOptions::new().write(true).open(&s.path)?;
            *active = Some(Active { file, len: s.len });
        }
        let a = active.as_mut().expect("opened above");
        let written = a.file.write_all_at(data, a.len).and_then(|()| {
            if self.sync {
                a.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Whatever part was written must not stay (the next append would follow it). If
            // even that fails, reopen the file on the next append.
            if a.file.set_len(a.len).is_err() {
                *active = None;
            }
            return Err(e);
        }
        let start = a.len;
        a.len += data.len() as u64;
        let mut segs = self.segments.lock().expect("poisoned");
        let s = segs.last_mut().expect("a segment");
        s.offsets
            .extend(rel_offsets.iter().map(|o| (start + *o as u64) as u32));
        s.len = a.len;
        Ok(())
    }

    /// The last seq on disk, if any record is.
    pub fn last_seq(&self) -> Option<u64> {
        let segs = self.segments.lock().expect("poisoned");
        segs.iter().rev().find_map(Segment::last_seq)
    }

    /// The first seq on disk, if any record is.
    #[cfg(test)]
    pub fn first_seq(&self) -> Option<u64> {
        let segs = self.segments.lock().expect("poisoned");
        segs.iter()
            .find(|s| !s.offsets.is_empty())
            .map(|s| s.first_seq)
    }

    /// Byte ranges holding up to `max` records from seq `from` on, by file.
    fn ranges(&self, from: u64, max: usize) -> Vec<(PathBuf, u64, u64)> {
        let segs = self.segments.lock().expect("poisoned");
        let mut out = Vec::new();
        let (mut seq, mut left) = (from, max);
        let start = segs.partition_point(|s| s.last_seq().is_none_or(|l| l < seq));
        for s in &segs[start..] {
            if left == 0 {
                break;
            }
            let Some(last) = s.last_seq() else { continue };
            if seq < s.first_seq {
                // A gap (a segment deleted): go on from the next record there is.
                seq = s.first_seq;
            }
            if seq > last {
                continue;
            }
            let n = ((last - seq + 1) as usize).min(left);
            let (a, b) = s.range(seq, n);
            out.push((s.path.clone(), a, b));
            seq += n as u64;
            left -= n;
        }
        out
    }

    /// Up to `max` records from seq `from` on, in order.
    pub fn read(&self, from: u64, max: usize) -> io::Result<Vec<RawRecord>> {
        let mut out = Vec::new();
        for (path, start, end) in self.ranges(from, max) {
            let file = match File::open(&path) {
                Ok(f) => f,
                // Deleted by truncation since: those records are done.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut buf = vec![0u8; (end - start) as usize];
            file.read_exact_at(&mut buf, start)?;
            let mut at = 0usize;
            while at < buf.len() {
                let h: &[u8; HEADER] = buf
                    .get(at..at + HEADER)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt(&path, "record header cut short"))?;
                let (header, crc) = Header::parse(h);
                let body = buf
                    .get(at + HEADER..at + HEADER + header.len as usize)
                    .ok_or_else(|| corrupt(&path, format!("record {} cut short", header.seq)))?;
                if checksum(h, body) != crc {
                    return Err(corrupt(
                        &path,
                        format!("record {}: checksum mismatch", header.seq),
                    ));
                }
                out.push(RawRecord {
                    header,
                    body: body.to_vec(),
                });
                at += HEADER + header.len as usize;
            }
        }
        Ok(out)
    }

    /// The header of record `seq`, or of the first record after it when `seq` is gone.
    pub fn header_from(&self, seq: u64) -> io::Result<Option<Header>> {
        let Some((path, start, _)) = self.ranges(seq, 1).into_iter().next() else {
            return Ok(None);
        };
        let mut h = [0u8; HEADER];
        match File::open(&path) {
            Ok(f) => f.read_exact_at(&mut h, start)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        Ok(Some(Header::parse(&h).0))
    }

    /// Deletes the segments whose every record is at or before `upto`, but never the newest.
    pub fn delete_upto(&self, upto: u64) -> io::Result<()> {
        let doomed: Vec<PathBuf> = {
            let mut segs = self.segments.lock().expect("poisoned");
            // Empty segments (a roll whose first write failed) go too.
            let keep_from = segs
                .iter()
                .position(|s| s.last_seq().is_some_and(|l| l > upto))
                .unwrap_or(segs.len())
                .min(segs.len().saturating_sub(1));
            segs.drain(..keep_from).map(|s| s.path).collect()
        };
        for path in &doomed {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The bytes every segment file under `log_dir` (all workspaces) takes; 0 if it does not exist.
pub(super) fn dir_bytes(log_dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    let workspaces = match std::fs::read_dir(log_dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for ws in workspaces {
        let ws = ws?;
        if !ws.file_type()?.is_dir() {
            continue;
        }
        for seg in std::fs::read_dir(ws.path())? {
            // A segment deleted by truncation between the listing and the stat is not counted.
            if let Ok(m) = seg?.metadata() {
                total += m.len();
            }
        }
    }
    Ok(total)
}

/// Reads a segment's records: their offsets, the length of its whole records, the last
/// record's header. A bad record in the newest segment ends it there (a torn write); in an
/// older one it is corruption.
fn scan(path: &Path, first_seq: u64, newest: bool) -> io::Result<(Vec<u32>, u64, Option<Header>)> {
    let mut r = io::BufReader::with_capacity(1 << 20, File::open(path)?);
    let (mut offsets, mut len, mut last) = (Vec::new(), 0u64, None);
    let mut body = Vec::new();
    loop {
        let mut h = [0u8; HEADER];
        match read_full(&mut r, &mut h)? {
            0 => break,
            n if n < HEADER => {
                if newest {
                    break;
                }
                return Err(corrupt(path, "record header cut short"));
            }
            _ => {}
        }
        let (header, crc) = Header::parse(&h);
        body.resize(header.len as usize, 0);
        let whole = read_full(&mut r, &mut body)? == body.len();
        let expected = first_seq + offsets.len() as u64;
        if !whole || checksum(&h, &body) != crc || header.seq != expected {
            if newest {
                break;
            }
            return Err(corrupt(path, format!("record {expected} is damaged")));
        }
        offsets.push(len as u32);
        len += (HEADER + body.len()) as u64;
        last = Some(header);
    }
    Ok((offsets, len, last))
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes `data` as a whole (tests: a torn record at the end of a segment).
#[cfg(test)]
fn append_raw(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    OpenOptions::new().append(true).open(path)?.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: u64, n: u64, ends_before: u64) -> (Vec<u8>, Vec<u32>, u64) {
        let (mut data, mut offs, mut end) = (Vec::new(), Vec::new(), ends_before);
        for seq in from..from + n {
            offs.push(data.len() as u32);
            let body = format!("record {seq}").into_bytes();
            end += body.len() as u64;
            encode(&mut data, seq, seq as i64 * 10, end, &body);
        }
        (data, offs, end)
    }

    #[test]
    fn append_read_roll_reopen_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let (s, last) = Segments::open(dir.path().join("1"), 200, true).unwrap();
        assert!(last.is_none());
        let mut end = 0;
        for chunk in 0..10u64 {
            let (data, offs, e) = batch(chunk * 5 + 1, 5, end);
            end = e;
            s.append(chunk * 5 + 1, &data, &offs).unwrap();
        }
        let all = s.read(1, 100).unwrap();
        assert_eq!(all.len(), 50);
        assert_eq!(all[49].body, b"record 50");
        assert_eq!(all[49].header.end_bytes, end);
        let some = s.read(7, 9).unwrap();
        assert_eq!(
            some.iter().map(|r| r.header.seq).collect::<Vec<_>>(),
            (7..16).collect::<Vec<_>>()
        );
        assert_eq!(s.header_from(23).unwrap().unwrap().received_at_ms, 230);
        let files = std::fs::read_dir(dir.path().join("1")).unwrap().count();
        assert!(files > 1, "segments roll past their size");

        s.delete_upto(30).unwrap();
        let first = s.first_seq().unwrap();
        assert!(first > 1 && first <= 31, "{first}");
        assert_eq!(s.read(1, 100).unwrap()[0].header.seq, first);
        s.delete_upto(1000).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("1")).unwrap().count(),
            1,
            "the newest stays"
        );

        drop(s);
        let (s, last) = Segments::open(dir.path().join("1"), 200, true).unwrap();
        assert_eq!(last.unwrap().seq, 50);
        let (data, offs, _) = batch(51, 1, end);
        s.append(51, &data, &offs).unwrap();
        assert_eq!(s.read(50, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_torn_or_damaged_end_of_the_newest_segment_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("1");
        let (s, _) = Segments::open(ws.clone(), 1 << 20, true).unwrap();
        let (data, offs, end) = batch(1, 3, 0);
        s.append(1, &data, &offs).unwrap();
        drop(s);
        let seg = ws.join(format!("{:020}.seg", 1));
        // A record cut short, as a crash during the write leaves it.
        let (more, _, _) = batch(4, 1, end);
        append_raw(&seg, &more[..more.len() - 2]).unwrap();
        let (s, last) = Segments::open(ws.clone(), 1 << 20, true).unwrap();
        assert_eq!(last.unwrap().seq, 3);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), data.len() as u64);
        s.append(4, &more, &[0]).unwrap();
        assert_eq!(s.read(1, 10).unwrap().len(), 4);
        drop(s);

        // A flipped byte in a record's body: the checksum catches it.
        let mut bytes = std::fs::read(&seg).unwrap();
        let i = HEADER + 2;
        bytes[i] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let (s, last) = Segments::open(ws.clone(), 1 << 20, true).unwrap();
        // In the newest segment the damaged record ends the log (nothing after it is trusted).
        assert!(last.is_none());
        assert!(s.read(1, 10).unwrap().is_empty());
    }
}
