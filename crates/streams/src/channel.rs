//! The WebSocket channel protocols Kubernetes uses for exec, attach and port-forward.
//!
//! Every binary message is one channel byte followed by payload. For remote commands the
//! channels are fixed (`0` stdin, `1` stdout, `2` stderr, `3` error status, `4` resize);
//! `v5.channel.k8s.io` adds a close message `[255, channel]` so a client can say "stdin is
//! finished" (v4 has no way to half-close). For `portforward.k8s.io` each requested port gets
//! a data channel `2i` and an error channel `2i+1`, and the first message the server sends on
//! each starts with the port number, little-endian.
//!
//! `SPDY/3.1+portforward.k8s.io` (kubectl 1.30+ port-forward) is not a channel protocol: the
//! binary messages carry an ordinary SPDY/3.1 byte stream with no framing of their own, so a
//! server unwraps the payloads and feeds them to [`crate::spdy`].

use crate::{Error, Result};
use bytes::{BufMut, Bytes, BytesMut};

/// Remote command protocol v4 (no stdin close).
pub const V4_CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";
/// Remote command protocol v5 (adds the close message).
pub const V5_CHANNEL_PROTOCOL: &str = "v5.channel.k8s.io";
/// Port-forward channel protocol over WebSocket.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// Port-forward channel protocol, versioned name.
pub const V4_PORT_FORWARD_PROTOCOL: &str = "v4.portforward.k8s.io";
/// SPDY/3.1 tunnelled in WebSocket binary messages, for port-forward.
pub const SPDY_TUNNEL_PORT_FORWARD_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Channel 0: the client's stdin.
pub const STDIN: u8 = 0;
/// Channel 1: stdout.
pub const STDOUT: u8 = 1;
/// Channel 2: stderr.
pub const STDERR: u8 = 2;
/// Channel 3: the error channel, carrying one `Status` JSON at the end.
pub const ERROR: u8 = 3;
/// Channel 4: terminal resize events (JSON `{"Width":..,"Height":..}`).
pub const RESIZE: u8 = 4;
/// v5 control channel: `[255, n]` closes channel `n` from the sender's side.
pub const CLOSE: u8 = 255;

/// Picks the first protocol in our `supported` preference list that the client offered.
/// `offered` are the `Sec-WebSocket-Protocol` header values; each may be a comma list.
pub fn negotiate<'a, I, S>(offered: I, supported: &[&'a str]) -> Option<&'a str>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let offered: Vec<String> = offered
        .into_iter()
        .flat_map(|h| {
            h.as_ref()
                .split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    supported
        .iter()
        .find(|s| offered.iter().any(|o| o == *s))
        .copied()
}

/// One message of a channel protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMessage {
    /// Payload on a channel.
    Data {
        /// Channel byte.
        channel: u8,
        /// Payload (may be empty).
        payload: Bytes,
    },
    /// v5 close: the sender will send nothing more on `channel`.
    Close {
        /// The channel being closed.
        channel: u8,
    },
}

impl ChannelMessage {
    /// Payload on `channel`.
    pub fn data(channel: u8, payload: impl Into<Bytes>) -> Self {
        Self::Data {
            channel,
            payload: payload.into(),
        }
    }

    /// Parses a binary message. `v5` enables the close message; under v4 channel 255 is just
    /// an unknown data channel.
    pub fn decode(msg: &[u8], v5: bool) -> Result<Self> {
        let (&channel, rest) = msg
            .split_first()
            .ok_or(Error::ChannelMessage("empty message has no channel byte"))?;
        if v5 && channel == CLOSE {
            let &target = rest
                .first()
                .ok_or(Error::ChannelMessage("close message without a channel"))?;
            return Ok(Self::Close { channel: target });
        }
        Ok(Self::Data {
            channel,
            payload: Bytes::copy_from_slice(rest),
        })
    }

    /// The binary message for this value.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Data { channel, payload } => {
                let mut b = BytesMut::with_capacity(1 + payload.len());
                b.put_u8(*channel);
                b.put_slice(payload);
                b.freeze()
            }
            Self::Close { channel } => Bytes::from(vec![CLOSE, *channel]),
        }
    }
}

/// A terminal size from the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

impl TerminalSize {
    /// Parses one resize event.
    pub fn parse(payload: &[u8]) -> Result<Self> {
        serde_json::from_slice(payload).map_err(|_| Error::ChannelMessage("bad resize event"))
    }
}

/// The first message on a port-forward channel: the port, little-endian, as the kubelet sends.
pub fn port_forward_prefix(channel: u8, port: u16) -> Bytes {
    let p = port.to_le_bytes();
    Bytes::from(vec![channel, p[0], p[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let cases = [
            (
                vec![0u8, b'h', b'i'],
                true,
                ChannelMessage::data(STDIN, &b"hi"[..]),
            ),
            (vec![1u8], true, ChannelMessage::data(STDOUT, Bytes::new())),
            (
                vec![255u8, 0],
                true,
                ChannelMessage::Close { channel: STDIN },
            ),
            (vec![255u8, 0], false, ChannelMessage::data(255, vec![0u8])),
        ];
        for (wire, v5, msg) in cases {
            assert_eq!(ChannelMessage::decode(&wire, v5).unwrap(), msg);
            assert_eq!(&msg.encode()[..], &wire[..]);
        }
        assert!(ChannelMessage::decode(&[], true).is_err());
        assert!(ChannelMessage::decode(&[255], true).is_err());
    }

    #[test]
    fn negotiation_prefers_our_order() {
        let offered = ["v4.channel.k8s.io, v5.channel.k8s.io", "channel.k8s.io"];
        assert_eq!(
            negotiate(offered, &[V5_CHANNEL_PROTOCOL, V4_CHANNEL_PROTOCOL]),
            Some(V5_CHANNEL_PROTOCOL)
        );
        assert_eq!(
            negotiate(
                ["v4.channel.k8s.io"],
                &[V5_CHANNEL_PROTOCOL, V4_CHANNEL_PROTOCOL]
            ),
            Some(V4_CHANNEL_PROTOCOL)
        );
        assert_eq!(
            negotiate(["base64.channel.k8s.io"], &[V5_CHANNEL_PROTOCOL]),
            None
        );
    }

    #[test]
    fn resize_and_port_prefix() {
        assert_eq!(
            TerminalSize::parse(br#"{"Width":80,"Height":24}"#).unwrap(),
            TerminalSize {
                width: 80,
                height: 24
            }
        );
        assert_eq!(&port_forward_prefix(0, 8080)[..], &[0, 0x90, 0x1f]);
    }
}
