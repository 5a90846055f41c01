//! Process stdio for the simulated container: what a command reads and writes, independent of
//! whether the bytes travel over WebSocket channels or SPDY streams.

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

/// Most bytes a command may slurp from stdin or collect from a pipe.
pub(crate) const MAX_BUFFERED: usize = 32 * 1024 * 1024;

/// Where a command's stdin comes from.
pub(crate) enum Stdin {
    /// The client's stdin; `None` from the channel is EOF.
    Chan {
        rx: mpsc::Receiver<Bytes>,
        pending: BytesMut,
        eof: bool,
    },
    /// A pipe or `<` redirect.
    Buf(Bytes),
    /// No stdin (`stdin=false`): reads see EOF at once.
    Empty,
}

impl Stdin {
    pub(crate) fn chan(rx: mpsc::Receiver<Bytes>) -> Self {
        Stdin::Chan {
            rx,
            pending: BytesMut::new(),
            eof: false,
        }
    }

    /// The next chunk, `None` at EOF.
    pub(crate) async fn chunk(&mut self) -> Option<Bytes> {
        match self {
            Stdin::Chan { rx, pending, eof } => {
                if !pending.is_empty() {
                    return Some(pending.split().freeze());
                }
                if *eof {
                    return None;
                }
                let r = rx.recv().await;
                if r.is_none() {
                    *eof = true;
                }
                r
            }
            Stdin::Buf(b) => (!b.is_empty()).then(|| std::mem::take(b)),
            Stdin::Empty => None,
        }
    }

    /// Puts bytes back to be read first next time.
    pub(crate) fn unread(&mut self, data: &[u8]) {
        match self {
            Stdin::Chan { pending, .. } => {
                let mut b = BytesMut::from(data);
                b.extend_from_slice(pending);
                *pending = b;
            }
            Stdin::Buf(b) => {
                let mut v = data.to_vec();
                v.extend_from_slice(b);
                *b = Bytes::from(v);
            }
            Stdin::Empty => *self = Stdin::Buf(Bytes::copy_from_slice(data)),
        }
    }

    /// One line including its `\n`, or the unterminated rest at EOF; `None` at EOF.
    pub(crate) async fn line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let Some(chunk) = self.chunk().await else {
                return (!line.is_empty()).then_some(line);
            };
            if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&chunk[..=i]);
                self.unread(&chunk[i + 1..]);
                return Some(line);
            }
            line.extend_from_slice(&chunk);
            if line.len() > MAX_BUFFERED {
                return Some(line);
            }
        }
    }

    /// Everything until EOF, capped at [`MAX_BUFFERED`].
    pub(crate) async fn all(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await {
            if out.len() + c.len() > MAX_BUFFERED {
                break;
            }
            out.extend_from_slice(&c);
        }
        out
    }
}

/// Where a command's output goes.
pub(crate) enum Sink {
    /// Straight to the client. `tty` translates `\n` to `\r\n` like a terminal's `onlcr`.
    Chan { tx: mpsc::Sender<Bytes>, tty: bool },
    /// Captured for a pipe or a redirect.
    Buf(Vec<u8>),
    /// Discarded (`stdout=false`, `2>/dev/null`).
    Null,
}

impl Sink {
    pub(crate) async fn write(&mut self, data: &[u8]) {
        match self {
            Sink::Chan { tx, tty } => {
                let bytes = if *tty {
                    let mut v = Vec::with_capacity(data.len() + 8);
                    let mut prev = 0u8;
                    for &b in data {
                        if b == b'\n' && prev != b'\r' {
                            v.push(b'\r');
                        }
                        v.push(b);
                        prev = b;
                    }
                    Bytes::from(v)
                } else {
                    Bytes::copy_from_slice(data)
                };
                // A closed channel means the client left; the command just runs on silently.
                let _ = tx.send(bytes).await;
            }
            Sink::Buf(v) => {
                if v.len() + data.len() <= MAX_BUFFERED {
                    v.extend_from_slice(data);
                }
            }
            Sink::Null => {}
        }
    }

    pub(crate) fn is_tty(&self) -> bool {
        matches!(self, Sink::Chan { tty: true, .. })
    }
}
