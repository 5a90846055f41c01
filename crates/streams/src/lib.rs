//! Kubernetes streaming protocols: SPDY/3.1 framing and sessions, and the WebSocket channel
//! protocols (`v4.channel.k8s.io`, `v5.channel.k8s.io`, `portforward.k8s.io`).
//!
//! The codecs are sans-I/O: they turn bytes into frames and frames into bytes and never own a
//! socket, so the simulator can serve them and the gateway can parse a stream passing through
//! it for recording. [`spdy::SpdyServer`] is the one piece that drives a transport; it is built
//! on the same codecs.
//!
//! Why our own SPDY: no permissively licensed Rust crate implements SPDY/3.1 and Kubernetes
//! still speaks it (kubectl < 1.30 and `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` for exec and
//! attach, and port-forward inside a WebSocket tunnel). Only what Kubernetes uses is
//! implemented: no flow control (moby/spdystream, the Go peer, ignores WINDOW_UPDATE), no
//! server push, no CREDENTIAL frames.
#![forbid(unsafe_code)]

pub mod channel;
pub mod error;
pub mod spdy;
pub mod status;

pub use error::{Error, Result};
