//! `--output file:PATH`: appends JSON lines.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use super::{OutputError, Sink, write_all};

pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl FileSink {
    pub fn open(path: &Path) -> Result<Self, OutputError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| OutputError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::with_capacity(64 * 1024, file),
        })
    }
}

impl Sink for FileSink {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        write_all(&mut self.out, line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
