//! The `--jsonl` journal: one graded sample per line, flushed as it happens, so a crash loses at
//! most the sample in flight, and a resumed run skips what the journal already holds.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::eval::run::{SampleRecord, parse_resume};

/// An open journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens `path` for a new run (truncating it), or, with `resume`, keeps its complete
    /// records, drops a last line cut off by a crash, and returns the kept records.
    pub fn open(path: &Path, resume: bool) -> Result<(Journal, Vec<SampleRecord>)> {
        let io = |action, source| Error::Io {
            action,
            path: path.display().to_string(),
            source,
        };
        let previous = if resume && path.exists() {
            parse_resume(&std::fs::read_to_string(path).map_err(|e| io("read", e))?)
        } else {
            Vec::new()
        };
        let file = File::create(path).map_err(|e| io("create", e))?;
        let mut journal = Journal {
            path: path.to_owned(),
            file,
        };
        for record in &previous {
            journal.append(record)?;
        }
        Ok((journal, previous))
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
