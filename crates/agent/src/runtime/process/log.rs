//! The CRI container log format, as containerd writes it and the kubelet reads it:
//! one record per line, `<RFC3339Nano time> <stdout|stderr> <F|P> <content>`.
//!
//! `F` closes a line; `P` is a piece of a line longer than [`MAX_LINE`], continued by
//! the next record of the same stream. Output that ends without a newline is written
//! as a full line when the stream closes, as containerd does.

use jiff::Timestamp;

/// The longest content of one record (containerd's default
/// `max_container_log_line_size`).
pub(crate) const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// Formats one record, newline included.
pub(crate) fn format_record(time: Timestamp, stream: LogStream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut record = format!("{time} {} {} ", stream.as_str(), if partial { "P" } else { "F" }).into_bytes();
    record.extend_from_slice(content);
    record.push(b'\n');
    record
}

/// Cuts one stream's output into records: feed it bytes as they are read, and
/// finish it when the stream closes.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    stream: LogStream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: LogStream) -> LineSplitter {
        LineSplitter { stream, pending: Vec::new() }
    }

    /// The records completed by `data`, stamped with `time`.
    pub fn feed(&mut self, time: Timestamp, data: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(newline) if newline <= MAX_LINE => {
                    let mut line = &rest[..newline];
                    // Like Go's bufio.ReadLine, which containerd uses: "\r\n" ends a line too.
                    if let [head @ .., b'\r'] = line {
                        line = head;
                    }
                    out.extend(format_record(time, self.stream, false, line));
                    start += newline + 1;
                }
                _ if rest.len() > MAX_LINE => {
                    out.extend(format_record(time, self.stream, true, &rest[..MAX_LINE]));
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        self.pending.drain(..start);
        out
    }

    /// The record of a last line without a newline, if any.
    pub fn finish(&mut self, time: Timestamp) -> Vec<u8> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let line = std::mem::take(&mut self.pending);
        format_record(time, self.stream, false, &line)
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub stream: LogStream,
    pub partial: bool,
    pub content: &'a [u8],
}

impl Record<'_> {
    /// The bytes the process wrote: the content, and the newline a full record had.
    pub fn output(&self) -> Vec<u8> {
        let mut out = self.content.to_vec();
        if !self.partial {
            out.push(b'\n');
        }
        out
    }
}

/// Parses one line of a log file (without its newline); `None` if malformed.
pub(crate) fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let _time = parts.next()?;
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(Record { stream, partial, content: parts.next().unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time() -> Timestamp {
        "2024-05-06T07:08:09.123456789Z".parse().unwrap()
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn full_lines_become_f_records_and_a_trailing_fragment_waits_for_its_newline() {
        let mut splitter = LineSplitter::new(LogStream::Stdout);
        assert_eq!(
            text(splitter.feed(time(), b"one\ntwo\r\nthr")),
            "2024-05-06T07:08:09.123456789Z stdout F one\n2024-05-06T07:08:09.123456789Z stdout F two\n"
        );
        assert_eq!(text(splitter.feed(time(), b"ee\n")), "2024-05-06T07:08:09.123456789Z stdout F three\n");
        assert_eq!(splitter.finish(time()), b"");
    }

    #[test]
    fn output_ending_without_a_newline_is_a_full_record_at_close() {
        let mut splitter = LineSplitter::new(LogStream::Stderr);
        assert_eq!(splitter.feed(time(), b"no newline"), b"");
        assert_eq!(text(splitter.finish(time())), "2024-05-06T07:08:09.123456789Z stderr F no newline\n");
    }

    #[test]
    fn lines_longer_than_the_limit_are_split_into_partial_records() {
        let mut splitter = LineSplitter::new(LogStream::Stdout);
        let mut long = vec![b'a'; MAX_LINE * 2 + 5];
        long.push(b'\n');
        let out = text(splitter.feed(time(), &long));
        let records: Vec<Record<'_>> = out.lines().map(|l| parse_record(l.as_bytes()).unwrap()).collect();
        assert_eq!(records.len(), 3);
        assert!(records[0].partial && records[1].partial && !records[2].partial);
        assert_eq!(records[0].content.len(), MAX_LINE);
        assert_eq!(records[2].content, b"aaaaa");
        let joined: Vec<u8> = records.iter().flat_map(|r| r.output()).collect();
        assert_eq!(joined, long);
    }

    #[test]
    fn records_parse_back_into_what_the_process_wrote() {
        let record = parse_record(b"2024-05-06T07:08:09Z stderr F a b  c").unwrap();
        assert_eq!(record, Record { stream: LogStream::Stderr, partial: false, content: b"a b  c" });
        assert_eq!(record.output(), b"a b  c\n");
        assert_eq!(parse_record(b"2024-05-06T07:08:09Z stdout F ").unwrap().output(), b"\n");
        assert_eq!(parse_record(b"garbage"), None);
    }
}
