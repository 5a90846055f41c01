//! exec and attach: the remote command protocol over WebSocket channels or SPDY streams.
//!
//! Both transports reduce to the same shape: a process with stdin/stdout/stderr channels that
//! returns an exit code, after which one `Status` goes to the error channel and the
//! connection closes. The process is cancelled if the client goes away first.

use super::io::{Sink, Stdin};
use super::shell::{Io, Shell};
use super::upgrade::{self, Ws};
use super::{bad_request, container_env, flag, param, pick_container, query_pairs, PodContext};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::{body::Incoming, Request, Response};
use std::time::Duration;
use streams::channel::{self, ChannelMessage};
use streams::spdy::{SpdyServer, SpdyStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How long the client gets to open all the streams it announced (the kubelet allows 30 s).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long we wait for the client's close handshake before dropping the connection. Short,
/// like the API server, which closes right after the status: a client that only notices the
/// close frame once the connection ends (the Python client buffers TLS records,
/// kubernetes-client/python#2414) must not stall for long.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// A container's main process: its argv, the container's name, whether it is ephemeral, and
/// where its exit goes.
struct Main {
    argv: Vec<String>,
    container: String,
    ephemeral: bool,
    lifecycle: Option<super::Lifecycle>,
}

/// Everything a session needs, extracted from the request before the upgrade.
struct Spec {
    attach: bool,
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    namespace: String,
    pod: String,
    env: Vec<(String, String)>,
    /// Attach to a container with a main process (see [`super::main_process`]).
    main: Option<Main>,
}

pub(super) fn serve(
    attach: bool,
    ctx: PodContext,
    mut req: Request<Incoming>,
) -> Response<crate::Body> {
    let q = query_pairs(&req);
    let container = match pick_container(&ctx, param(&q, "container")) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let command: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if !attach && command.is_empty() {
        return bad_request("you must specify at least one command for the container");
    }
    let tty = flag(&q, "tty");
    let main = attach
        .then(|| super::main_process(&ctx, &container))
        .flatten()
        .map(|argv| Main {
            argv,
            container: container.name.clone(),
            ephemeral: container.ephemeral,
            lifecycle: ctx.lifecycle.clone(),
        });
    let spec = Spec {
        main,
        attach,
        command,
        stdin: flag(&q, "stdin"),
        stdout: flag(&q, "stdout"),
        // With a TTY stderr is merged into stdout, as kubectl and the kubelet agree.
        stderr: flag(&q, "stderr") && !tty,
        tty,
        env: container_env(&ctx, &container, tty),
        namespace: ctx.namespace.clone(),
        pod: ctx.name.clone(),
    };
    if !(spec.stdin || spec.stdout || spec.stderr) {
        return bad_request("you must specify at least 1 of stdin, stdout, stderr");
    }
    if upgrade::is_websocket(&req) {
        let supported = [channel::V5_CHANNEL_PROTOCOL, channel::V4_CHANNEL_PROTOCOL];
        match upgrade::accept_websocket(&mut req, &supported) {
            Ok(acc) => {
                let v5 = acc.protocol == channel::V5_CHANNEL_PROTOCOL;
                tokio::spawn(async move {
                    if let Some(io) = upgrade::upgraded(acc.on_upgrade).await {
                        websocket_session(upgrade::websocket(io).await, v5, spec).await;
                    }
                });
                acc.response
            }
            Err(resp) => *resp,
        }
    } else if upgrade::is_spdy(&req) {
        let supported = [channel::V4_CHANNEL_PROTOCOL, channel::V5_CHANNEL_PROTOCOL];
        match upgrade::accept_spdy(&mut req, &supported) {
            Ok(acc) => {
                tokio::spawn(async move {
                    if let Some(io) = upgrade::upgraded(acc.on_upgrade).await {
                        spdy_session(io, spec).await;
                    }
                });
                acc.response
            }
            Err(resp) => *resp,
        }
    } else {
        bad_request("Upgrade request required")
    }
}

/// Runs the command (or the attach loop) until it exits; `None` if the client left first.
async fn run_process(
    spec: &Spec,
    stdin: Stdin,
    stdout: Sink,
    stderr: Sink,
    gone: impl std::future::Future<Output = ()>,
) -> Option<i32> {
    let (mut stdin, mut stdout, mut stderr) = (stdin, stdout, stderr);
    let process = async {
        let mut io = Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        if let Some(main) = &spec.main {
            let fs = super::fs::for_pod(&spec.namespace, &spec.pod, &spec.pod);
            let mut shell = Shell::new(spec.env.clone(), fs, spec.pod.clone());
            let code = shell.exec(&main.argv, &mut io).await;
            if let Some(l) = &main.lifecycle {
                l.exited(
                    &spec.namespace,
                    &spec.pod,
                    &main.container,
                    main.ephemeral,
                    code,
                );
            }
            // Attach reports success when the stream ends, whatever the process's exit code
            // (the kubelet's attach does): kubectl reads that from the pod's status.
            0
        } else if spec.attach {
            attach_main(spec, &mut io).await
        } else {
            let fs = super::fs::for_pod(&spec.namespace, &spec.pod, &spec.pod);
            let mut shell = Shell::new(spec.env.clone(), fs, spec.pod.clone());
            shell.exec(&spec.command, &mut io).await
        }
    };
    tokio::select! {
        code = process => Some(code),
        () = gone => None,
    }
}

/// The container's main process as seen by attach: echoes stdin lines to stdout. Without
/// stdin it produces nothing and runs until the client detaches.
async fn attach_main(spec: &Spec, io: &mut Io<'_>) -> i32 {
    if !spec.stdin {
        std::future::pending::<()>().await;
    }
    while let Some(line) = io.stdin.line().await {
        io.stdout.write(&line).await;
    }
    0
}

fn exit_status(spec: &Spec, code: i32) -> Bytes {
    let status = streams::status::exit_code(&spec.command, code);
    Bytes::from(status.to_string())
}

/// Output channel for one process stream, or a discarding sink when not requested.
fn output(enabled: bool, tty: bool) -> (Sink, Option<mpsc::Receiver<Bytes>>) {
    if enabled {
        let (tx, rx) = mpsc::channel(16);
        (Sink::Chan { tx, tty }, Some(rx))
    } else {
        (Sink::Null, None)
    }
}

// === WebSocket ===

async fn websocket_session(ws: Ws, v5: bool, spec: Spec) {
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.send(super::upgrade::normal_close()).await;
    });

    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (gone_tx, gone_rx) = watch::channel(false);
    let want_stdin = spec.stdin;
    let mut reader = tokio::spawn(async move {
        let mut stdin_tx = want_stdin.then_some(stdin_tx);
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            match ChannelMessage::decode(&data, v5) {
                Ok(ChannelMessage::Data {
                    channel: channel::STDIN,
                    payload,
                }) => {
                    if let Some(tx) = &stdin_tx {
                        if tx.send(payload).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                }
                Ok(ChannelMessage::Close {
                    channel: channel::STDIN,
                }) => stdin_tx = None,
                // Resize events and anything else have no effect on the simulated process.
                _ => {}
            }
        }
        gone_tx.send_replace(true);
    });

    let (stdout, stdout_rx) = output(spec.stdout, spec.tty);
    let (stderr, stderr_rx) = output(spec.stderr, false);
    let pumps: Vec<JoinHandle<()>> = [(channel::STDOUT, stdout_rx), (channel::STDERR, stderr_rx)]
        .into_iter()
        .filter_map(|(ch, rx)| rx.map(|rx| ws_pump(ch, rx, out_tx.clone())))
        .collect();
    let stdin = if spec.stdin {
        Stdin::chan(stdin_rx)
    } else {
        Stdin::Empty
    };
    let code = run_process(&spec, stdin, stdout, stderr, wait_true(gone_rx)).await;
    for p in pumps {
        let _ = p.await;
    }
    if let Some(code) = code {
        let status = ChannelMessage::data(channel::ERROR, exit_status(&spec, code));
        let _ = out_tx.send(Message::Binary(status.encode().to_vec())).await;
    }
    drop(out_tx);
    let _ = writer.await;
    // Give the client time to answer the close handshake, then drop the connection.
    if tokio::time::timeout(CLOSE_GRACE, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
}

fn ws_pump(ch: u8, mut rx: mpsc::Receiver<Bytes>, out: mpsc::Sender<Message>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            let msg = ChannelMessage::data(ch, data).encode().to_vec();
            if out.send(Message::Binary(msg)).await.is_err() {
                return;
            }
        }
    })
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            // Sender dropped without signalling: treat as gone.
            return;
        }
    }
}

// === SPDY ===

#[derive(Default)]
struct Streams {
    error: Option<SpdyStream>,
    stdin: Option<SpdyStream>,
    stdout: Option<SpdyStream>,
    stderr: Option<SpdyStream>,
    resize: Option<SpdyStream>,
}

async fn spdy_session(io: upgrade::Io, spec: Spec) {
    let mut server = match SpdyServer::new(io) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "spdy session failed to start");
            return;
        }
    };
    let expected = 1
        + usize::from(spec.stdin)
        + usize::from(spec.stdout)
        + usize::from(spec.stderr)
        + usize::from(spec.tty);
    let mut s = Streams::default();
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while received < expected {
        let Ok(Some(stream)) = tokio::time::timeout_at(deadline, server.accept()).await else {
            tracing::debug!(received, expected, "spdy exec: streams not created in time");
            return;
        };
        let slot = match stream.stream_type() {
            Some("error") => &mut s.error,
            Some("stdin") => &mut s.stdin,
            Some("stdout") => &mut s.stdout,
            Some("stderr") => &mut s.stderr,
            Some("resize") => &mut s.resize,
            _ => continue,
        };
        *slot = Some(stream);
        received += 1;
    }
    // Resize events are irrelevant here; dropping the reader discards them without stalling
    // the session.
    drop(s.resize.take());

    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let stdin = match s.stdin.take() {
        Some(stream) => {
            let (mut r, _w) = stream.split();
            tokio::spawn(async move {
                while let Some(b) = r.read().await {
                    if stdin_tx.send(b).await.is_err() {
                        break;
                    }
                }
            });
            Stdin::chan(stdin_rx)
        }
        None => Stdin::Empty,
    };
    let (stdout, stdout_rx) = output(s.stdout.is_some(), spec.tty);
    let (stderr, stderr_rx) = output(s.stderr.is_some(), false);
    let pumps: Vec<JoinHandle<()>> = [(s.stdout.take(), stdout_rx), (s.stderr.take(), stderr_rx)]
        .into_iter()
        .filter_map(|(stream, rx)| Some(spdy_pump(stream?, rx?)))
        .collect();
    let code = run_process(&spec, stdin, stdout, stderr, server.peer_done()).await;
    for p in pumps {
        let _ = p.await;
    }
    if let (Some(code), Some(err)) = (code, s.error.take()) {
        let _ = err.write(exit_status(&spec, code)).await;
        let _ = err.close().await;
    }
    // Dropping the session flushes queued frames and closes the connection.
}

fn spdy_pump(stream: SpdyStream, mut rx: mpsc::Receiver<Bytes>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let w = stream.writer();
        drop(stream);
        while let Some(data) = rx.recv().await {
            if w.write(data).await.is_err() {
                return;
            }
        }
        let _ = w.close().await;
    })
}
