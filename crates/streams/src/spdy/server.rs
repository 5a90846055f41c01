//! A server-side SPDY session over any byte transport.
//!
//! Two tasks per connection: a reader that decodes frames, answers SYN_STREAM with SYN_REPLY
//! and PING with PING, and routes DATA to per-stream channels; and a writer that owns the
//! encoder (and so the deflate context) and is the only code touching the write half.
//! Splitting them matters: a handler echoing a stream blocks on the writer while the reader
//! may be blocked handing it the next chunk, and one task doing both would deadlock.
//!
//! Lifetime: the tasks stop on their own. When the [`SpdyServer`] and every [`StreamWriter`]
//! are dropped the writer flushes what is queued, shuts the write half down, and the reader
//! drains the peer's remaining bytes for a short grace period (closing a socket with unread
//! input makes the kernel send RST, which can destroy output the peer has not read yet).

use super::{rst_status, Frame, FrameDecoder, FrameEncoder, Headers, FLAG_FIN};
use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Chunks queued per stream before the reader waits for the handler (backpressure).
const STREAM_QUEUE: usize = 16;
/// Frames queued for the writer.
const WRITE_QUEUE: usize = 64;
/// Largest DATA payload we send; matches what Go peers write.
const MAX_DATA_CHUNK: usize = 32 * 1024;
/// How long the reader keeps draining after the session is dropped.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Dropping the last reference tells the reader to wind down.
#[derive(Debug)]
struct Shared {
    closing: watch::Sender<bool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closing.send_replace(true);
    }
}

// === impl SpdyServer ===

/// A SPDY/3.1 server session: accepts the streams the client opens.
#[derive(Debug)]
pub struct SpdyServer {
    incoming: mpsc::Receiver<SpdyStream>,
    peer_done: watch::Receiver<bool>,
    _shared: Arc<Shared>,
}

impl SpdyServer {
    /// Starts a session on `io` (an upgraded HTTP connection, or a WebSocket tunnel). Spawns
    /// the reader and writer tasks on the current tokio runtime.
    pub fn new<T>(io: T) -> Result<Self>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let encoder = FrameEncoder::new()?;
        let (rd, wr) = tokio::io::split(io);
        let (frames_tx, frames_rx) = mpsc::channel(WRITE_QUEUE);
        let (accept_tx, accept_rx) = mpsc::channel(STREAM_QUEUE);
        let (closing_tx, closing_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            closing: closing_tx,
        });
        tokio::spawn(write_loop(wr, frames_rx, encoder));
        let reader = Reader {
            frames: frames_tx,
            accept: Some(accept_tx),
            closing: closing_rx,
            shared: Arc::downgrade(&shared),
            streams: HashMap::new(),
            last_stream_id: 0,
        };
        tokio::spawn(async move {
            reader.run(rd).await;
            done_tx.send_replace(true);
        });
        Ok(Self {
            incoming: accept_rx,
            peer_done: done_rx,
            _shared: shared,
        })
    }

    /// The next stream the client opened, or `None` once the client sent GOAWAY or the
    /// connection ended.
    pub async fn accept(&mut self) -> Option<SpdyStream> {
        self.incoming.recv().await
    }

    /// Resolves when the client's side of the connection is finished (EOF, error or protocol
    /// violation); useful to notice a client that went away while nothing is being written.
    pub fn peer_done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.peer_done.clone();
        async move {
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

// === impl SpdyStream ===

/// One stream opened by the client, already answered with SYN_REPLY.
#[derive(Debug)]
pub struct SpdyStream {
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

impl SpdyStream {
    /// Stream id.
    pub fn id(&self) -> u32 {
        self.writer.id
    }

    /// Headers from SYN_STREAM.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The `streamType` header (`stdin`, `stdout`, `stderr`, `error`, `resize`, `data`).
    pub fn stream_type(&self) -> Option<&str> {
        self.headers.get("streamtype")
    }

    /// Next chunk from the client; `None` after its FIN, a reset, or the end of the session.
    pub async fn read(&mut self) -> Option<Bytes> {
        self.reader.read().await
    }

    /// Sends data to the client.
    pub async fn write(&self, data: Bytes) -> Result<()> {
        self.writer.write(data).await
    }

    /// Half-closes our side (DATA with FIN).
    pub async fn close(&self) -> Result<()> {
        self.writer.close().await
    }

    /// A handle that can write to this stream.
    pub fn writer(&self) -> StreamWriter {
        self.writer.clone()
    }

    /// Splits into independently usable halves.
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

/// The receiving half of a stream.
#[derive(Debug)]
pub struct StreamReader {
    rx: mpsc::Receiver<Bytes>,
}

impl StreamReader {
    /// Next chunk; `None` after the client's FIN, a reset, or the end of the session.
    pub async fn read(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

/// The sending half of a stream. Clones write to the same stream.
#[derive(Debug, Clone)]
pub struct StreamWriter {
    id: u32,
    frames: mpsc::Sender<Frame>,
    _shared: Arc<Shared>,
}

impl StreamWriter {
    /// Stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Queues `data` as DATA frames of at most 32 KiB.
    pub async fn write(&self, mut data: Bytes) -> Result<()> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_DATA_CHUNK));
            self.send(Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: chunk,
            })
            .await?;
        }
        Ok(())
    }

    /// Half-closes the stream: an empty DATA frame with FIN, as spdystream's `Close` does.
    pub async fn close(&self) -> Result<()> {
        self.send(Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await
    }

    /// Aborts the stream with RST_STREAM.
    pub async fn reset(&self, status: u32) -> Result<()> {
        self.send(Frame::RstStream {
            stream_id: self.id,
            status,
        })
        .await
    }

    async fn send(&self, frame: Frame) -> Result<()> {
        self.frames
            .send(frame)
            .await
            .map_err(|_| Error::ConnectionClosed)
    }
}

// === impl Reader ===

struct Reader {
    frames: mpsc::Sender<Frame>,
    accept: Option<mpsc::Sender<SpdyStream>>,
    closing: watch::Receiver<bool>,
    shared: Weak<Shared>,
    streams: HashMap<u32, mpsc::Sender<Bytes>>,
    last_stream_id: u32,
}

/// Why the reader stopped reading frames.
enum Stop {
    /// The peer is done (EOF, error, bad frame).
    Peer,
    /// The local side dropped the session.
    Local,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(mut self, mut rd: R) {
        let stop = self.read_frames(&mut rd).await;
        // Release streams and the writer so handlers see end-of-stream and the writer can
        // finish once the handler lets go too.
        let Reader { frames, accept, .. } = self;
        drop((frames, accept));
        if let Stop::Local = stop {
            let mut sink = vec![0u8; 8192];
            let _ = tokio::time::timeout(DRAIN_GRACE, async {
                while let Ok(n) = rd.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
    }

    async fn read_frames<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> Stop {
        let mut dec = FrameDecoder::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            loop {
                match dec.next_frame() {
                    Ok(Some(frame)) => {
                        if let Some(stop) = self.on_frame(frame).await {
                            return stop;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "spdy: bad frame from peer");
                        let _ = self
                            .frames
                            .send(Frame::GoAway {
                                last_good_stream_id: self.last_stream_id,
                                status: 1,
                            })
                            .await;
                        return Stop::Peer;
                    }
                }
            }
            if *self.closing.borrow() {
                return Stop::Local;
            }
            tokio::select! {
                _ = self.closing.changed() => return Stop::Local,
                n = rd.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return Stop::Peer,
                    Ok(n) => dec.feed(&buf[..n]),
                },
            }
        }
    }

    /// Handles one frame; `Some` stops the session.
    async fn on_frame(&mut self, frame: Frame) -> Option<Stop> {
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => return self.on_syn_stream(stream_id, flags, headers).await,
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(tx) = self.streams.get(&stream_id) {
                    if !data.is_empty() {
                        let tx = tx.clone();
                        tokio::select! {
                            r = tx.send(data) => if r.is_err() {
                                // The handler dropped its reader: discard further data.
                                self.streams.remove(&stream_id);
                            },
                            _ = self.closing.changed() => return Some(Stop::Local),
                        }
                    }
                }
                if flags & FLAG_FIN != 0 {
                    self.streams.remove(&stream_id);
                }
            }
            Frame::Headers {
                stream_id, flags, ..
            } if flags & FLAG_FIN != 0 => {
                self.streams.remove(&stream_id);
            }
            Frame::RstStream { stream_id, .. } => {
                self.streams.remove(&stream_id);
            }
            // Pings the client started have odd ids and must be echoed; even ids would be
            // answers to ours, and we send none.
            Frame::Ping { id } if id % 2 == 1 => {
                return self
                    .frames
                    .send(Frame::Ping { id })
                    .await
                    .is_err()
                    .then_some(Stop::Local);
            }
            Frame::GoAway { .. } => {
                // No new streams; existing ones run to completion.
                self.accept = None;
            }
            _ => {}
        }
        None
    }

    async fn on_syn_stream(&mut self, stream_id: u32, flags: u8, headers: Headers) -> Option<Stop> {
        let valid = stream_id % 2 == 1
            && stream_id > self.last_stream_id
            && !self.streams.contains_key(&stream_id);
        let reject = |status| Frame::RstStream { stream_id, status };
        if !valid {
            let _ = self.frames.send(reject(rst_status::PROTOCOL_ERROR)).await;
            return None;
        }
        self.last_stream_id = stream_id;
        let (Some(accept), Some(shared)) = (self.accept.clone(), self.shared.upgrade()) else {
            let _ = self.frames.send(reject(rst_status::REFUSED_STREAM)).await;
            return None;
        };
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        if flags & FLAG_FIN == 0 {
            self.streams.insert(stream_id, tx);
        }
        // Reply before the handler sees the stream, so SYN_REPLY precedes any DATA we send.
        let reply = Frame::SynReply {
            stream_id,
            flags: 0,
            headers: Headers::new(),
        };
        if self.frames.send(reply).await.is_err() {
            return Some(Stop::Local);
        }
        let stream = SpdyStream {
            headers,
            reader: StreamReader { rx },
            writer: StreamWriter {
                id: stream_id,
                frames: self.frames.clone(),
                _shared: shared,
            },
        };
        tokio::select! {
            r = accept.send(stream) => if r.is_err() {
                self.accept = None;
            },
            _ = self.closing.changed() => return Some(Stop::Local),
        }
        None
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut frames: mpsc::Receiver<Frame>,
    mut enc: FrameEncoder,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(frame) = frames.recv().await {
        if let Err(e) = enc.encode(&frame, &mut buf) {
            tracing::debug!(error = %e, "spdy: cannot encode frame");
            return;
        }
        // Coalesce whatever else is ready into one write.
        while buf.len() < 64 * 1024 {
            match frames.try_recv() {
                Ok(frame) => {
                    if enc.encode(&frame, &mut buf).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spdy::FLAG_FIN;
    use tokio::io::DuplexStream;

    /// A test client speaking raw frames.
    struct Client {
        io: DuplexStream,
        enc: FrameEncoder,
        dec: FrameDecoder,
    }

    impl Client {
        async fn send(&mut self, f: Frame) {
            let mut b = BytesMut::new();
            self.enc.encode(&f, &mut b).unwrap();
            self.io.write_all(&b).await.unwrap();
        }
        async fn recv(&mut self) -> Option<Frame> {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(f) = self.dec.next_frame().unwrap() {
                    return Some(f);
                }
                let n = tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut buf))
                    .await
                    .expect("timed out")
                    .unwrap();
                if n == 0 {
                    return None;
                }
                self.dec.feed(&buf[..n]);
            }
        }
        async fn syn(&mut self, id: u32, kind: &str) {
            self.send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers: Headers::new().with("streamType", kind),
            })
            .await;
        }
    }

    fn pair() -> (SpdyServer, Client) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = SpdyServer::new(a).unwrap();
        let client = Client {
            io: b,
            enc: FrameEncoder::new().unwrap(),
            dec: FrameDecoder::new(),
        };
        (server, client)
    }

    #[tokio::test]
    async fn accepts_streams_replies_and_echoes_with_half_close() {
        let (mut server, mut client) = pair();
        client.syn(1, "error").await;
        client.syn(3, "data").await;
        let e = server.accept().await.unwrap();
        assert_eq!(e.stream_type(), Some("error"));
        let mut d = server.accept().await.unwrap();
        assert_eq!((d.id(), d.stream_type()), (3, Some("data")));
        for id in [1, 3] {
            assert_eq!(
                client.recv().await,
                Some(Frame::SynReply {
                    stream_id: id,
                    flags: 0,
                    headers: Headers::new()
                })
            );
        }
        client
            .send(Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"ping"),
            })
            .await;
        assert_eq!(d.read().await.as_deref(), Some(&b"ping"[..]));
        assert_eq!(d.read().await, None, "FIN ends the read side");
        d.write(Bytes::from_static(b"ping")).await.unwrap();
        d.close().await.unwrap();
        assert_eq!(
            client.recv().await,
            Some(Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"ping")
            })
        );
        assert!(client.recv().await.unwrap().is_fin());
        // Dropping everything ends the session: the client sees EOF.
        drop((d, e, server));
        assert_eq!(client.recv().await, None);
    }

    #[tokio::test]
    async fn pings_from_the_client_are_echoed_and_bad_streams_reset() {
        let (_server, mut client) = pair();
        client.send(Frame::Ping { id: 7 }).await;
        assert_eq!(client.recv().await, Some(Frame::Ping { id: 7 }));
        client.syn(2, "stdin").await; // even ids belong to the server
        assert_eq!(
            client.recv().await,
            Some(Frame::RstStream {
                stream_id: 2,
                status: rst_status::PROTOCOL_ERROR
            })
        );
    }

    #[tokio::test]
    async fn goaway_and_eof_end_accept() {
        let (mut server, mut client) = pair();
        client
            .send(Frame::GoAway {
                last_good_stream_id: 0,
                status: 0,
            })
            .await;
        assert!(server.accept().await.is_none());
        drop(client);
        server.peer_done().await;
    }
}
