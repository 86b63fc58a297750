//! Where an HTTP/1.1 connection's requests begin and end, from the bytes the server
//! read of it: so that a connection whose last request carried a body can move to the
//! next process once that body is behind it, and never with the rest of a body that
//! would reach the new process as a request.
//!
//! hyper does not say how far it has read: the helper counts every byte hyper reads
//! ([`Framing::feed`]) and, when it takes the socket back, learns from hyper's unparsed
//! buffer how many it consumed. A request ends after its head, or after its body as
//! RFC 9112 section 6.3 frames it: `Transfer-Encoding` ending in `chunked` (chunks,
//! then trailers), else `Content-Length`, else no body. Anything this does not frame
//! with certainty (a head it cannot parse or longer than hyper accepts, another
//! transfer coding, a `Content-Length` that is not one number, `CONNECT`) ends the
//! count: no later boundary is known, and the connection winds down by closing. An
//! upgrade that takes place takes the connection out of hyper's hands, and it does not
//! move anyway; one refused goes on as HTTP/1.1, framed as any request.

use std::collections::VecDeque;

/// The longest request head counted (hyper's own limit is lower): a longer one ends
/// the count.
const MAX_HEAD: usize = 64 * 1024;

/// The most headers a head may have to be counted (hyper's default is 100).
const MAX_HEADERS: usize = 128;

/// How many of the last boundaries are kept: hyper's unparsed buffer may hold several
/// pipelined requests, never this many.
const KEPT: usize = 64;

/// The longest chunk-size line, or trailer line, counted.
const MAX_LINE: usize = 4096;

/// The framing of one connection's requests, fed with every byte read of it in order.
#[derive(Debug)]
pub(crate) struct Framing {
    /// Bytes fed so far.
    total: u64,
    /// Stream offsets at which a request ended (and the next may begin), the newest
    /// last; offset 0 is the first.
    boundaries: VecDeque<u64>,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Reading a head: what came of it so far.
    Head(Vec<u8>),
    /// Reading a body of a known length: how much is left.
    Body(u64),
    /// Reading a chunked body.
    Chunked(Chunk),
    /// Framing unknown from here on.
    Lost,
}

#[derive(Debug)]
enum Chunk {
    /// The chunk-size line, so far.
    Size(Vec<u8>),
    /// Data of the chunk, this much left, then CRLF.
    Data(u64),
    /// The CRLF after a chunk's data: how many of its two bytes came.
    DataEnd(u8),
    /// A trailer line (or the empty line that ends the body), so far.
    Trailer(Vec<u8>),
}

impl Default for Framing {
    fn default() -> Framing {
        Framing {
            total: 0,
            boundaries: VecDeque::from([0]),
            state: State::Head(Vec::new()),
        }
    }
}

impl Framing {
    /// Counts `bytes`, read of the connection after everything fed before.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = self.step(bytes);
            self.total += used as u64;
            bytes = &bytes[used..];
        }
    }

    /// Bytes fed so far.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The first boundary between two requests at or after stream offset `consumed`
    /// that has been read (is at most [`total`](Self::total)), if one is known.
    pub(crate) fn boundary_from(&self, consumed: u64) -> Option<u64> {
        self.boundaries.iter().copied().find(|b| *b >= consumed)
    }

    /// One step on `bytes` (not empty): how many it used.
    fn step(&mut self, bytes: &[u8]) -> usize {
        match &mut self.state {
            State::Lost => bytes.len(),
            State::Body(left) => {
                let used = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                *left -= used as u64;
                if *left == 0 {
                    self.ended(used);
                }
                used
            }
            State::Head(head) => {
                let used = line_end(head, bytes, b"\r\n\r\n");
                head.extend_from_slice(&bytes[..used]);
                if head.ends_with(b"\r\n\r\n") {
                    let head = std::mem::take(head);
                    self.state = framing_of(&head);
                    if matches!(self.state, State::Head(_)) {
                        self.ended(used);
                    }
                } else if head.len() > MAX_HEAD {
                    self.state = State::Lost;
                }
                used
            }
            State::Chunked(chunk) => {
                let (used, next) = chunk_step(chunk, bytes);
                match next {
                    Next::Stay => {}
                    Next::Lost => self.state = State::Lost,
                    Next::Ended => self.ended(used),
                }
                used
            }
        }
    }

    /// A request ended after `used` more bytes of this step: the next head begins.
    fn ended(&mut self, used: usize) {
        self.state = State::Head(Vec::new());
        self.boundaries.push_back(self.total + used as u64);
        if self.boundaries.len() > KEPT {
            self.boundaries.pop_front();
        }
    }
}

/// How many of `bytes` to take so that `so_far` plus them ends at the first `end`
/// (or all of them, if `end` is not reached).
fn line_end(so_far: &[u8], bytes: &[u8], end: &[u8]) -> usize {
    // The end may begin in what came before.
    let back = so_far.len().min(end.len() - 1);
    let mut joined = so_far[so_far.len() - back..].to_vec();
    joined.extend_from_slice(bytes);
    match joined.windows(end.len()).position(|w| w == end) {
        Some(at) => at + end.len() - back,
        None => bytes.len(),
    }
}

/// The framing that follows a whole head: its body's, or the next head's if it has
/// none.
fn framing_of(head: &[u8]) -> State {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return State::Lost,
    }
    if request.method == Some("CONNECT") {
        return State::Lost;
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for header in request.headers.iter() {
        let name = header.name;
        let Ok(value) = std::str::from_utf8(header.value) else {
            return State::Lost;
        };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked`, last: any other coding frames nothing here.
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") || value.split(',').count() > 1 || chunked {
                return State::Lost;
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return State::Lost;
                }
                let Ok(n) = part.parse::<u64>() else {
                    return State::Lost;
                };
                if length.is_some_and(|l| l != n) {
                    return State::Lost;
                }
                length = Some(n);
            }
        }
    }
    match (chunked, length) {
        // Both: a request smuggling attempt, or a broken client.
        (true, Some(_)) => State::Lost,
        (true, None) => State::Chunked(Chunk::Size(Vec::new())),
        (false, Some(n)) if n > 0 => State::Body(n),
        (false, _) => State::Head(Vec::new()),
    }
}

enum Next {
    Stay,
    Ended,
    Lost,
}

/// Takes from `bytes` what belongs to the CRLF-ended `line` begun: how many bytes it
/// took, and, while the line is not whole yet, what follows for the body (it stays,
/// or it cannot be framed: the line is too long).
fn take_line(line: &mut Vec<u8>, bytes: &[u8]) -> (usize, Option<Next>) {
    let used = line_end(line, bytes, b"\r\n");
    line.extend_from_slice(&bytes[..used]);
    if line.ends_with(b"\r\n") {
        return (used, None);
    }
    let next = if line.len() > MAX_LINE {
        Next::Lost
    } else {
        Next::Stay
    };
    (used, Some(next))
}

/// One step of a chunked body on `bytes` (not empty): how many it used, and whether
/// the body ended or cannot be framed.
fn chunk_step(chunk: &mut Chunk, bytes: &[u8]) -> (usize, Next) {
    match chunk {
        Chunk::Size(line) => {
            let (used, partial) = take_line(line, bytes);
            if let Some(next) = partial {
                return (used, next);
            }
            // The size, in hex, before any extension.
            let text = &line[..line.len() - 2];
            let digits = text.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            let rest = &text[digits..];
            let extension_ok = rest.is_empty() || matches!(rest[0], b';' | b' ' | b'\t');
            let size = std::str::from_utf8(&text[..digits])
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok());
            match size {
                Some(size) if digits > 0 && extension_ok => {
                    *chunk = if size == 0 {
                        Chunk::Trailer(Vec::new())
                    } else {
                        Chunk::Data(size)
                    };
                    (used, Next::Stay)
                }
                _ => (used, Next::Lost),
            }
        }
        Chunk::Data(left) => {
            let used = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
            *left -= used as u64;
            if *left == 0 {
                *chunk = Chunk::DataEnd(0);
            }
            (used, Next::Stay)
        }
        Chunk::DataEnd(seen) => {
            let want = if *seen == 0 { b'\r' } else { b'\n' };
            if bytes[0] != want {
                return (1, Next::Lost);
            }
            *seen += 1;
            if *seen == 2 {
                *chunk = Chunk::Size(Vec::new());
            }
            (1, Next::Stay)
        }
        Chunk::Trailer(line) => {
            let (used, partial) = take_line(line, bytes);
            if let Some(next) = partial {
                return (used, next);
            }
            if line.len() == 2 {
                return (used, Next::Ended);
            }
            line.clear();
            (used, Next::Stay)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The boundaries after feeding `stream` whole.
    fn boundaries(stream: &[u8]) -> Vec<u64> {
        let mut framing = Framing::default();
        framing.feed(stream);
        framing.boundaries.iter().copied().collect()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    const POST: &[u8] = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    const CHUNKED: &[u8] =
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: t\r\n\r\n";

    #[test]
    fn requests_end_after_their_head_or_their_body() {
        let len = |b: &[u8]| b.len() as u64;
        let table: [(&[&[u8]], Vec<u64>); 6] = [
            (&[GET], vec![0, len(GET)]),
            (&[POST], vec![0, len(POST)]),
            (&[CHUNKED], vec![0, len(CHUNKED)]),
            (&[GET, POST], vec![0, len(GET), len(GET) + len(POST)]),
            (
                &[CHUNKED, GET],
                vec![0, len(CHUNKED), len(CHUNKED) + len(GET)],
            ),
            // Half a body: no boundary after its head.
            (&[&POST[..POST.len() - 2]], vec![0]),
        ];
        for (parts, expected) in table {
            assert_eq!(boundaries(&parts.concat()), expected, "{parts:?}");
        }
    }

    #[test]
    fn what_cannot_be_framed_for_certain_ends_the_count() {
        let lost: [&[u8]; 7] = [
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\x16\x03\x01 not a request at all\r\n\r\n",
        ];
        for head in lost {
            let stream = [head, GET, GET].concat();
            assert_eq!(
                boundaries(&stream),
                vec![0],
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        // A bad chunk size.
        let bad = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(boundaries(&[bad.as_slice(), GET].concat()), vec![0]);
        // An upgrade asked for and refused goes on as HTTP/1.1.
        let asked = b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n";
        assert_eq!(boundaries(asked), vec![0, asked.len() as u64]);
        // Repeated equal lengths are one length.
        let twice = b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nhi";
        assert_eq!(boundaries(twice), vec![0, twice.len() as u64]);
    }

    #[test]
    fn a_head_too_long_ends_the_count() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        while head.len() <= MAX_HEAD {
            head.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        let mut framing = Framing::default();
        framing.feed(&head);
        framing.feed(b"\r\n");
        framing.feed(GET);
        assert_eq!(framing.boundary_from(1), None);
    }

    #[test]
    fn the_boundary_from_an_offset_is_the_first_read_at_or_after_it() {
        let mut framing = Framing::default();
        framing.feed(&[GET, POST].concat());
        let get = GET.len() as u64;
        assert_eq!(framing.boundary_from(0), Some(0));
        assert_eq!(framing.boundary_from(1), Some(get));
        assert_eq!(framing.boundary_from(get), Some(get));
        assert_eq!(
            framing.boundary_from(get + 1),
            Some(get + POST.len() as u64)
        );
        assert_eq!(framing.boundary_from(get + POST.len() as u64 + 1), None);
        assert_eq!(framing.total(), get + POST.len() as u64);
    }

    proptest! {
        /// However the bytes of a stream of requests are cut into reads, the same
        /// boundaries are found.
        #[test]
        fn reads_cut_anywhere_find_the_same_boundaries(
            picks in proptest::collection::vec(0usize..3, 1..8),
            cuts in proptest::collection::vec(1usize..40, 1..200),
        ) {
            let requests = [GET, POST, CHUNKED];
            let stream: Vec<u8> = picks.iter().flat_map(|i| requests[*i].to_vec()).collect();
            let whole = boundaries(&stream);
            prop_assert_eq!(whole.len(), picks.len() + 1);
            let mut framing = Framing::default();
            let mut rest = stream.as_slice();
            let mut cuts = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cuts.next().unwrap_or(&1)).min(rest.len());
                framing.feed(&rest[..n]);
                rest = &rest[n..];
            }
            let cut: Vec<u64> = framing.boundaries.iter().copied().collect();
            prop_assert_eq!(cut, whole);
        }
    }
}
