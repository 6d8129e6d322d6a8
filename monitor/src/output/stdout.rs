//! `--output stdout`.

use std::io::{BufWriter, Stdout, Write};

use super::LocalSink;

pub struct StdoutSink {
    out: BufWriter<Stdout>,
}

impl StdoutSink {
    pub fn new() -> Self {
        Self {
            out: BufWriter::with_capacity(64 * 1024, std::io::stdout()),
        }
    }
}

impl LocalSink for StdoutSink {
    fn name(&self) -> String {
        "stdout".to_owned()
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        super::write_whole(&mut self.out, line)
    }

    fn unwritten_lines(&self) -> u64 {
        super::buffered_lines(&self.out)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
