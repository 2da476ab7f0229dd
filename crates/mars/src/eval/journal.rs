//! The `--jsonl` journal: one graded sample per line, flushed as it happens, so a crash loses at
//! most the sample in flight, and a resumed run skips what the journal already holds.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, truncate_for_error};
use crate::eval::run::SampleRecord;

/// How [`Journal::open`] treats a file that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// A new run: an existing non-empty file is an error, so no recording is lost by accident.
    New,
    /// A new run that replaces whatever the file holds.
    Overwrite,
    /// Continue the run the file records (a missing file starts one).
    Resume,
}

/// An open journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens `path` as `mode` says. With [`OpenMode::Resume`] it returns the records the file
    /// holds (see [`read_records`]), drops a last line cut off by a crash from the file, and
    /// appends after the rest; the kept lines are never rewritten, so a crash while resuming
    /// loses nothing either.
    pub fn open(path: &Path, mode: OpenMode) -> Result<(Journal, Vec<SampleRecord>)> {
        let io = |action, source| Error::Io {
            action,
            path: path.display().to_string(),
            source,
        };
        let existing = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(invalid(path, "is a directory".into()));
            }
            Ok(meta) => meta.len(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => return Err(io("inspect", err)),
        };
        if mode == OpenMode::New && existing > 0 {
            return Err(invalid(
                path,
                format!(
                    "already holds {existing} bytes of samples; resume that run or overwrite it \
                     explicitly"
                ),
            ));
        }
        if mode != OpenMode::Resume || existing == 0 {
            let file = File::create(path).map_err(|e| io("create", e))?;
            return Ok((
                Journal {
                    path: path.to_owned(),
                    file,
                },
                Vec::new(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io("read", e))?;
        let (records, kept) = read_records(&text).map_err(|err| match err {
            Error::Decode {
                line_number,
                line,
                reason,
            } => invalid(path, format!("line {line_number}: {reason}: {line}")),
            other => other,
        })?;
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io("open", e))?;
        file.set_len(kept as u64).map_err(|e| io("truncate", e))?;
        let mut journal = Journal {
            path: path.to_owned(),
            file,
        };
        {
            use std::io::Seek;
            journal
                .file
                .seek(std::io::SeekFrom::End(0))
                .map_err(|e| io("seek in", e))?;
        }
        if kept > 0 && !text[..kept].ends_with('\n') {
            journal
                .file
                .write_all(b"\n")
                .map_err(|e| io("append to", e))?;
        }
        Ok((journal, records))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a line and flushes it.
    pub fn append(&mut self, record: &SampleRecord) -> Result<()> {
        let io = |source| Error::Io {
            action: "append to",
            path: self.path.display().to_string(),
            source,
        };
        let line = serde_json::to_string(record).map_err(|e| io(std::io::Error::other(e)))?;
        writeln!(self.file, "{line}").map_err(io)?;
        self.file.flush().map_err(io)
    }
}

fn invalid(path: &Path, reason: String) -> Error {
    Error::InvalidConfig {
        field: "jsonl",
        reason: format!("{}: {reason}", path.display()),
    }
}

/// The records of a journal's text, and how many of its bytes hold them. Only a last line
/// without its newline that does not decode (a write cut off by a crash) is dropped; any other
/// bad line, and a second record of the same sample, is [`Error::Decode`] naming the line.
pub fn read_records(text: &str) -> Result<(Vec<SampleRecord>, usize)> {
    let mut records = Vec::new();
    let mut lines_of = HashMap::new();
    let mut kept = 0;
    let mut offset = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (index, raw) in lines.iter().enumerate() {
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            kept = offset;
            continue;
        }
        let bad = |reason: String| Error::Decode {
            line_number: index as u64 + 1,
            line: truncate_for_error(line, 300),
            reason,
        };
        let record: SampleRecord = match serde_json::from_str(line) {
            Ok(record) => record,
            Err(_) if index + 1 == lines.len() && !raw.ends_with('\n') => break,
            Err(err) => return Err(bad(format!("not a sample record ({err})"))),
        };
        if let Some(first) = lines_of.insert(record.key(), index + 1) {
            return Err(bad(format!("the same sample as line {first}")));
        }
        records.push(record);
        kept = offset;
    }
    Ok((records, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(task: &str, sample: u32) -> String {
        format!(r#"{{"task_id":"{task}","strategy":"baseline","sample":{sample},"answer":"x"}}"#)
    }

    #[test]
    fn only_a_cut_off_last_line_is_dropped() {
        let whole = format!("{}\n{}\n", line("a", 0), line("a", 1));
        let (records, kept) = read_records(&whole).unwrap();
        assert_eq!((records.len(), kept), (2, whole.len()));
        assert_eq!(records[1].sample, 1);

        let cut = format!("{whole}{}", &line("a", 2)[..20]);
        let (records, kept) = read_records(&cut).unwrap();
        assert_eq!((records.len(), kept), (2, whole.len()));

        // Complete but for its newline: kept.
        let unterminated = format!("{whole}{}", line("a", 2));
        let (records, kept) = read_records(&unterminated).unwrap();
        assert_eq!((records.len(), kept), (3, unterminated.len()));

        let bad_middle = format!("{}\n{{oops\n{}\n", line("a", 0), line("a", 1));
        let err = read_records(&bad_middle).unwrap_err();
        assert!(matches!(err, Error::Decode { line_number: 2, .. }), "{err}");
        let bad_last = format!("{whole}{{oops\n");
        let err = read_records(&bad_last).unwrap_err();
        assert!(matches!(err, Error::Decode { line_number: 3, .. }), "{err}");
        let twice = format!("{whole}{}\n", line("a", 0));
        let err = read_records(&twice).unwrap_err();
        assert!(
            err.to_string().contains("the same sample as line 1"),
            "{err}"
        );
    }

    #[test]
    fn a_new_run_never_overwrites_a_recording_by_accident() {
        let path = std::env::temp_dir().join(format!("mars-journal-{}.jsonl", std::process::id()));
        std::fs::write(&path, format!("{}\n{}", line("a", 0), &line("a", 1)[..9])).unwrap();
        let err = Journal::open(&path, OpenMode::New).unwrap_err();
        assert!(
            err.to_string().contains("resume that run or overwrite it"),
            "{err}"
        );

        let (mut journal, previous) = Journal::open(&path, OpenMode::Resume).unwrap();
        assert_eq!(previous.len(), 1);
        let next = read_records(&line("a", 1)).unwrap().0.remove(0);
        journal.append(&next).unwrap();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{}\n{}\n",
                line("a", 0),
                serde_json::to_string(&next).unwrap()
            )
        );

        let (_journal, previous) = Journal::open(&path, OpenMode::Overwrite).unwrap();
        assert!(previous.is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        std::fs::remove_file(&path).unwrap();
    }
}
