//! Container logs as `kubectl logs` reads them: the CRI log files a runtime writes,
//! turned back into the container's output.
//!
//! Each file line is `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`; a
//! `P` (partial) line is joined with the lines after it up to the next `F`, so a long
//! line written in pieces comes back whole. A container's instances write
//! `<dir>/<container>/<restartCount>.log`: the highest number is the current one,
//! the one before it `--previous`.
//!
//! The options follow upstream's `PodLogOptions` as the kubelet applies them: tail
//! first, then `since`, then the byte limit; `follow` keeps reading while the
//! container runs and stops once it has ended (or a newer instance has started) and
//! the file is drained.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Output is sent in chunks of about this size when there is more to read at once.
const CHUNK: usize = 32 * 1024;

/// What to read, as the query of `GET /containerLogs/...` says (upstream's
/// `PodLogOptions`, after the API server validated them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Only lines written at or after this time (`sinceTime`, or now minus `sinceSeconds`).
    pub since: Option<Timestamp>,
    /// Prefix each line with its timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A query parameter that does not parse.
    #[error("{0}")]
    BadOption(String),
    /// `--previous` for a container that has not restarted.
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious { container: String, pod: String },
    /// No instance of the container has written a log yet.
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")]
    NotStarted { container: String, pod: String },
    #[error("reading the container log failed: {0}")]
    Io(#[from] std::io::Error),
}

impl LogOptions {
    /// Parses the kubelet's query parameters; `now` anchors `sinceSeconds`.
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, now: Timestamp) -> Result<LogOptions, LogError> {
        let mut o = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        let flag = |v: &str| matches!(v, "" | "1" | "true" | "True" | "TRUE");
        let number = |k: &str, v: &str| v.parse::<u64>().map_err(|_| LogError::BadOption(format!("invalid value {v:?} for query parameter {k}")));
        for (k, v) in pairs {
            match k {
                "follow" => o.follow = flag(v),
                "previous" => o.previous = flag(v),
                "timestamps" => o.timestamps = flag(v),
                "tailLines" => o.tail_lines = Some(number(k, v)?),
                "limitBytes" => o.limit_bytes = Some(number(k, v)?),
                "sinceSeconds" => since_seconds = Some(number(k, v)?),
                "sinceTime" => {
                    since_time = Some(v.parse::<Timestamp>().map_err(|e| LogError::BadOption(format!("invalid value {v:?} for query parameter sinceTime: {e}")))?)
                }
                _ => {}
            }
        }
        o.since = match (since_time, since_seconds) {
            (Some(t), _) => Some(t),
            (None, Some(s)) => Some(now - jiff::SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX / 2))),
            (None, None) => None,
        };
        Ok(o)
    }
}

/// The log files of one container's instances, oldest first: `(restartCount, path)`.
pub fn log_files(container_dir: &Path) -> std::io::Result<Vec<(u32, PathBuf)>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(container_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse::<u32>().ok()) else { continue };
        files.push((n, entry.path()));
    }
    files.sort_by_key(|(n, _)| *n);
    Ok(files)
}

/// The file `kubectl logs` (or `--previous`) reads for a container, with its
/// restart number.
pub fn select_file(container_dir: &Path, previous: bool, container: &str, pod: &str) -> Result<(u32, PathBuf), LogError> {
    let mut files = log_files(container_dir)?;
    let current = files.pop().ok_or_else(|| LogError::NotStarted { container: container.into(), pod: pod.into() })?;
    if !previous {
        return Ok(current);
    }
    files.pop().ok_or_else(|| LogError::NoPrevious { container: container.into(), pod: pod.into() })
}

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    /// A `P` line: the content continues on the next line.
    pub partial: bool,
    /// Without the line's own newline.
    pub content: &'a [u8],
}

/// Parses one line (with or without its trailing newline); `None` if it is not in
/// CRI format.
pub fn parse_line(line: &[u8]) -> Option<CriLine<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let tag = parts.next()?;
    // The tag may carry more flags after a colon; only P/F matter here.
    let partial = tag.split(|b| *b == b':').next()? == b"P";
    let content = parts.next().unwrap_or(b"");
    Some(CriLine { timestamp, stream, partial, content })
}

/// Formats a timestamp as Go's RFC3339Nano does: the fraction without trailing
/// zeros (and no fraction at all for whole seconds), the offset as written.
pub fn format_timestamp(ts: &str) -> String {
    let Some(dot) = ts.find('.') else { return ts.to_string() };
    let rest = &ts[dot + 1..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let fraction = rest[..digits].trim_end_matches('0');
    let offset = &rest[digits..];
    if fraction.is_empty() {
        format!("{}{}", &ts[..dot], offset)
    } else {
        format!("{}.{}{}", &ts[..dot], fraction, offset)
    }
}

/// Whether the followed container still writes to this log: false once it has
/// stopped running (or is gone).
pub type StillRunning = Box<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// What stops a `follow`.
pub struct Follow {
    pub running: StillRunning,
    /// The container's log directory, to notice a newer instance's file.
    pub container_dir: PathBuf,
    /// The restart number of the file being followed.
    pub instance: u32,
}

impl Follow {
    async fn should_stop(&self) -> bool {
        let newer = log_files(&self.container_dir).map(|f| f.iter().any(|(n, _)| *n > self.instance)).unwrap_or(false);
        newer || !(self.running)().await
    }
}

/// Where the start of each of the last `n` log entries (a run of `P` lines and its
/// closing `F`) lies in the file.
async fn tail_offset(path: &Path, n: u64) -> std::io::Result<u64> {
    if n == 0 {
        return Ok(tokio::fs::metadata(path).await?.len());
    }
    let mut reader = BufReader::new(tokio::fs::File::open(path).await?);
    let mut starts = std::collections::VecDeque::new();
    let mut offset = 0u64;
    let mut entry_open = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).await?;
        if read == 0 {
            break;
        }
        if !entry_open {
            starts.push_back(offset);
            if starts.len() as u64 > n {
                starts.pop_front();
            }
        }
        entry_open = parse_line(&line).is_some_and(|l| l.partial);
        offset += read as u64;
    }
    Ok(starts.front().copied().unwrap_or(offset))
}

/// Writes one log into `out` as the kubelet would serve it. Returns when the log is
/// read (or `follow` ends, or the byte limit is reached, or the receiver is gone).
pub async fn read_log(path: &Path, options: &LogOptions, follow: Option<Follow>, out: mpsc::Sender<Bytes>) -> Result<(), LogError> {
    let start = match options.tail_lines {
        Some(n) => tail_offset(path, n).await?,
        None => 0,
    };
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(SeekFrom::Start(start)).await?;
    let mut reader = BufReader::new(file);
    let follow = follow.filter(|_| options.follow);
    let mut budget = options.limit_bytes.unwrap_or(u64::MAX);
    let mut pending = BytesMut::new();
    let mut line = Vec::new();
    // Within an entry (after a P line): no new prefix, and the entry's time decides.
    let mut in_entry = false;
    let mut skipping = false;
    let mut stopping = false;
    loop {
        let read = reader.read_until(b'\n', &mut line).await?;
        if read == 0 || !line.ends_with(b"\n") {
            // End of what is written so far (perhaps mid-line).
            if !pending.is_empty() && out.send(pending.split().freeze()).await.is_err() {
                return Ok(());
            }
            let Some(f) = &follow else {
                if !line.is_empty() {
                    // A final line without its newline: serve it as it is.
                    emit(&line, options, &mut in_entry, &mut skipping, &mut pending, &mut budget);
                    let _ = out.send(pending.split().freeze()).await;
                }
                return Ok(());
            };
            if stopping {
                return Ok(());
            }
            if out.is_closed() {
                return Ok(());
            }
            if f.should_stop().await {
                // One more pass to drain what was written before it stopped.
                stopping = true;
                continue;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
            continue;
        }
        let done = emit(&line, options, &mut in_entry, &mut skipping, &mut pending, &mut budget);
        line.clear();
        if done {
            let _ = out.send(pending.split().freeze()).await;
            return Ok(());
        }
        if pending.len() >= CHUNK && out.send(pending.split().freeze()).await.is_err() {
            return Ok(());
        }
    }
}

/// Appends one file line's output to `pending`; true once the byte limit is reached.
fn emit(raw: &[u8], options: &LogOptions, in_entry: &mut bool, skipping: &mut bool, pending: &mut BytesMut, budget: &mut u64) -> bool {
    let Some(line) = parse_line(raw) else {
        // Not CRI format: skip it, as the kubelet does with unparsable lines.
        return false;
    };
    if !*in_entry {
        *skipping = match options.since {
            Some(since) => line.timestamp.parse::<Timestamp>().map(|t| t < since).unwrap_or(false),
            None => false,
        };
    }
    let starts_entry = !*in_entry;
    *in_entry = line.partial;
    if *skipping {
        return false;
    }
    let mut text = Vec::with_capacity(line.content.len() + 40);
    if options.timestamps && starts_entry {
        text.extend_from_slice(format_timestamp(line.timestamp).as_bytes());
        text.push(b' ');
    }
    text.extend_from_slice(line.content);
    if !line.partial && raw.ends_with(b"\n") {
        text.push(b'\n');
    }
    let take = (text.len() as u64).min(*budget) as usize;
    pending.extend_from_slice(&text[..take]);
    *budget -= take as u64;
    *budget == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn write(dir: &Path, container: &str, n: u32, text: &str) -> PathBuf {
        let d = dir.join(container);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("{n}.log"));
        std::fs::write(&p, text).unwrap();
        p
    }

    async fn read_all(path: &Path, options: LogOptions, follow: Option<Follow>) -> String {
        let (tx, mut rx) = mpsc::channel(16);
        let path = path.to_path_buf();
        let task = tokio::spawn(async move { read_log(&path, &options, follow, tx).await });
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend_from_slice(&chunk);
        }
        task.await.unwrap().unwrap();
        String::from_utf8(out).unwrap()
    }

    const LOG: &str = "2024-05-01T10:00:00.100000000Z stdout F one\n\
                       2024-05-01T10:00:01.000000000Z stderr P tw\n\
                       2024-05-01T10:00:01.500000000Z stderr F o\n\
                       2024-05-01T10:00:02.25Z stdout F three\n";

    #[test]
    fn cri_lines_parse_into_their_four_fields() {
        let l = parse_line(b"2024-05-01T10:00:00Z stdout P hello world\n").unwrap();
        assert_eq!((l.timestamp, l.stream, l.partial, l.content), ("2024-05-01T10:00:00Z", "stdout", true, &b"hello world"[..]));
        let l = parse_line(b"2024-05-01T10:00:00Z stderr F \n").unwrap();
        assert_eq!((l.stream, l.partial, l.content), ("stderr", false, &b""[..]));
        assert!(parse_line(b"not a log line\n").is_none());
    }

    #[test]
    fn timestamps_print_like_go_rfc3339nano() {
        assert_eq!(format_timestamp("2024-05-01T10:00:00.100000000Z"), "2024-05-01T10:00:00.1Z");
        assert_eq!(format_timestamp("2024-05-01T10:00:00.000000000+02:00"), "2024-05-01T10:00:00+02:00");
        assert_eq!(format_timestamp("2024-05-01T10:00:00Z"), "2024-05-01T10:00:00Z");
        assert_eq!(format_timestamp("2024-05-01T10:00:00.123456789Z"), "2024-05-01T10:00:00.123456789Z");
    }

    #[tokio::test]
    async fn partial_lines_are_joined_with_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c", 0, LOG);
        assert_eq!(read_all(&p, LogOptions::default(), None).await, "one\ntwo\nthree\n");
    }

    #[tokio::test]
    async fn timestamps_prefix_each_whole_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c", 0, LOG);
        let out = read_all(&p, LogOptions { timestamps: true, ..Default::default() }, None).await;
        assert_eq!(out, "2024-05-01T10:00:00.1Z one\n2024-05-01T10:00:01Z two\n2024-05-01T10:00:02.25Z three\n");
    }

    #[tokio::test]
    async fn tail_counts_joined_lines_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c", 0, LOG);
        assert_eq!(read_all(&p, LogOptions { tail_lines: Some(2), ..Default::default() }, None).await, "two\nthree\n");
        assert_eq!(read_all(&p, LogOptions { tail_lines: Some(0), ..Default::default() }, None).await, "");
        assert_eq!(read_all(&p, LogOptions { tail_lines: Some(10), ..Default::default() }, None).await, "one\ntwo\nthree\n");
    }

    #[tokio::test]
    async fn since_skips_older_lines_and_limit_cuts_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c", 0, LOG);
        let since = Some("2024-05-01T10:00:01Z".parse().unwrap());
        assert_eq!(read_all(&p, LogOptions { since, ..Default::default() }, None).await, "two\nthree\n");
        assert_eq!(read_all(&p, LogOptions { limit_bytes: Some(6), ..Default::default() }, None).await, "one\ntw");
    }

    #[test]
    fn options_parse_from_the_kubelet_query() {
        let now: Timestamp = "2024-05-01T10:00:10Z".parse().unwrap();
        let o = LogOptions::from_query([("follow", "true"), ("tailLines", "5"), ("sinceSeconds", "10"), ("timestamps", "1")], now).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.since, Some("2024-05-01T10:00:00Z".parse().unwrap()));
        assert!(matches!(LogOptions::from_query([("tailLines", "x")], now), Err(LogError::BadOption(_))));
    }

    #[test]
    fn previous_is_the_second_newest_instance() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "c", 0, LOG);
        let err = select_file(&dir.path().join("c"), true, "c", "p").unwrap_err();
        assert_eq!(err.to_string(), "previous terminated container \"c\" in pod \"p\" not found");
        write(dir.path(), "c", 1, LOG);
        write(dir.path(), "c", 10, LOG);
        assert_eq!(select_file(&dir.path().join("c"), false, "c", "p").unwrap().0, 10);
        assert_eq!(select_file(&dir.path().join("c"), true, "c", "p").unwrap().0, 1);
        assert!(matches!(select_file(&dir.path().join("other"), false, "other", "p"), Err(LogError::NotStarted { .. })));
    }

    #[tokio::test]
    async fn follow_reads_new_lines_until_the_container_stops() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c", 0, "2024-05-01T10:00:00Z stdout F first\n");
        let running = Arc::new(AtomicBool::new(true));
        let r = running.clone();
        let follow = Follow {
            running: Box::new(move || {
                let r = r.clone();
                Box::pin(async move { r.load(Ordering::SeqCst) })
            }),
            container_dir: dir.path().join("c"),
            instance: 0,
        };
        let (tx, mut rx) = mpsc::channel(16);
        let path = p.clone();
        let task = tokio::spawn(async move { read_log(&path, &LogOptions { follow: true, ..Default::default() }, Some(follow), tx).await });
        assert_eq!(&rx.recv().await.unwrap()[..], b"first\n");
        // A line written in two steps, as a writer racing the reader would.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"2024-05-01T10:00:01Z stdout F sec").unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        f.write_all(b"ond\n").unwrap();
        assert_eq!(&rx.recv().await.unwrap()[..], b"second\n");
        f.write_all(b"2024-05-01T10:00:02Z stdout F last\n").unwrap();
        running.store(false, Ordering::SeqCst);
        let mut rest = Vec::new();
        while let Some(chunk) = rx.recv().await {
            rest.extend_from_slice(&chunk);
        }
        assert_eq!(rest, b"last\n");
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn follow_stops_when_a_new_instance_starts_logging() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c", 0, "2024-05-01T10:00:00Z stdout F old\n");
        let follow = Follow { running: Box::new(|| Box::pin(async { true })), container_dir: dir.path().join("c"), instance: 0 };
        let dir_path = dir.path().to_path_buf();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            write(&dir_path, "c", 1, "2024-05-01T10:00:05Z stdout F new\n");
        });
        let out = tokio::time::timeout(Duration::from_secs(5), read_all(&p, LogOptions { follow: true, ..Default::default() }, Some(follow))).await.unwrap();
        assert_eq!(out, "old\n");
    }
}
