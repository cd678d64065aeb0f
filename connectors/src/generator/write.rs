//! Writing a recorded stream directory from the generator.

use super::{GenConfig, GenError, GenStats, GenStream, Generator};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to write a recorded stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Compress every file except `anomalies.jsonl` with zstd (`.jsonl.zst`).
    pub zstd: bool,
    /// zstd level (1 is fast and good enough for replay fixtures).
    pub zstd_level: i32,
    /// Show a progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            zstd: false,
            zstd_level: 1,
            progress: true,
        }
    }
}

enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::Encoder<'static, BufWriter<File>>),
}

struct Out {
    path: PathBuf,
    sink: Sink,
    bytes: u64,
}

impl Out {
    fn create(dir: &Path, name: &str, zstd: bool, level: i32) -> Result<Out, GenError> {
        let name = if zstd {
            format!("{name}.zst")
        } else {
            name.to_string()
        };
        let path = dir.join(name);
        let err = |source| GenError::Write {
            path: path.clone(),
            source,
        };
        let file = BufWriter::with_capacity(1 << 20, File::create(&path).map_err(err)?);
        let sink = if zstd {
            Sink::Zstd(zstd::Encoder::new(file, level).map_err(err)?)
        } else {
            Sink::Plain(file)
        };
        Ok(Out {
            path,
            sink,
            bytes: 0,
        })
    }

    fn line(&mut self, text: &str) -> Result<(), GenError> {
        let w: &mut dyn Write = match &mut self.sink {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
        };
        w.write_all(text.as_bytes())
            .and_then(|_| w.write_all(b"\n"))
            .map_err(|source| GenError::Write {
                path: self.path.clone(),
                source,
            })?;
        self.bytes += text.len() as u64 + 1;
        Ok(())
    }

    fn finish(self) -> Result<u64, GenError> {
        let err = |source| GenError::Write {
            path: self.path.clone(),
            source,
        };
        let mut file = match self.sink {
            Sink::Plain(w) => w,
            Sink::Zstd(e) => e.finish().map_err(err)?,
        };
        file.flush().map_err(err)?;
        Ok(self.bytes)
    }
}

fn progress_bar(cfg: &GenConfig, opts: &WriteOptions) -> Option<ProgressBar> {
    if !opts.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(cfg.records), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} generating [{bar:40}] {human_pos}/{human_len} records, {per_sec}, eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// Writes a recorded stream for `cfg` into `dir` (created if needed): `transactions.jsonl`,
/// `behavior.jsonl`, `products.jsonl`, `customers.jsonl`, `ip_reputation.jsonl`,
/// `changes.jsonl` (each `.jsonl.zst` with `opts.zstd`) and `anomalies.jsonl`.
pub fn write_recorded_stream(
    cfg: &GenConfig,
    dir: &Path,
    opts: &WriteOptions,
) -> Result<GenStats, GenError> {
    let started = Instant::now();
    let mut gen = Generator::new(cfg.clone())?;
    std::fs::create_dir_all(dir).map_err(|source| GenError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let (z, lvl) = (opts.zstd, opts.zstd_level);
    let mut bytes = 0;
    for (name, lines) in [
        ("products.jsonl", &gen.tables().products),
        ("customers.jsonl", &gen.tables().customers),
        ("ip_reputation.jsonl", &gen.tables().ip_reputation),
    ] {
        let mut out = Out::create(dir, name, z, lvl)?;
        for l in lines {
            out.line(&l.json)?;
        }
        bytes += out.finish()?;
    }
    let mut tx = Out::create(dir, GenStream::Transactions.file_name(), z, lvl)?;
    let mut ev = Out::create(dir, GenStream::Behavior.file_name(), z, lvl)?;
    let mut ch = Out::create(dir, GenStream::Change.file_name(), z, lvl)?;
    let bar = progress_bar(cfg, opts);
    let mut n: u64 = 0;
    while let Some(item) = gen.next_item() {
        match item.stream {
            GenStream::Transactions => tx.line(&item.json)?,
            GenStream::Behavior => ev.line(&item.json)?,
            GenStream::Change => ch.line(&item.json)?,
        }
        n += 1;
        if n.is_multiple_of(65_536) {
            if let Some(b) = &bar {
                b.set_position(gen.stats().transactions + gen.stats().behavior);
            }
        }
        gen.recycle(item);
    }
    bytes += tx.finish()? + ev.finish()? + ch.finish()?;
    let mut an = Out::create(dir, "anomalies.jsonl", false, 0)?;
    for a in gen.anomalies() {
        an.line(&a.to_json())?;
    }
    bytes += an.finish()?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut stats = gen.stats().clone();
    stats.bytes = bytes;
    stats.elapsed = started.elapsed();
    Ok(stats)
}
