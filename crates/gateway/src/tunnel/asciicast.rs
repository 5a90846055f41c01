//! Recorded exec/attach sessions as asciicast v2 (<https://docs.asciinema.org/manual/asciicast/v2/>),
//! for `asciinema play` and the replay CLI.

use std::time::UNIX_EPOCH;

use serde_json::json;

use super::{TunnelEvent, TunnelEventKind};

/// One header line, then one `[seconds, code, data]` line per event: `o` for stdout and stderr
/// (a terminal shows both), `i` for stdin, `r` for resizes (`"WxH"`). The header's `timestamp`
/// comes from the `Open` event. A UTF-8 character split between two events is kept whole.
pub fn to_asciicast(events: &[TunnelEvent], width: u16, height: u16) -> String {
    let mut header = json!({"version": 2, "width": width, "height": height});
    if let Some(ts) = events.iter().find_map(|e| match &e.kind {
        TunnelEventKind::Open { started, .. } => started.duration_since(UNIX_EPOCH).ok(),
        _ => None,
    }) {
        header["timestamp"] = ts.as_secs().into();
    }
    let mut s = header.to_string();
    s.push('\n');
    let mut carry_o = Vec::new();
    let mut carry_i = Vec::new();
    for e in events {
        let secs = (e.at.as_secs_f64() * 1e6).round() / 1e6;
        let (code, text) = match &e.kind {
            TunnelEventKind::Stdout(b) | TunnelEventKind::Stderr(b) => ("o", utf8(&mut carry_o, b)),
            TunnelEventKind::Stdin(b) => ("i", utf8(&mut carry_i, b)),
            TunnelEventKind::Resize { width, height } => ("r", format!("{width}x{height}")),
            _ => continue,
        };
        if text.is_empty() {
            continue;
        }
        s.push_str(&json!([secs, code, text]).to_string());
        s.push('\n');
    }
    s
}

/// Appends `bytes` to `carry` and returns the text of all complete characters; an incomplete
/// sequence at the end stays in `carry`, invalid bytes become U+FFFD.
fn utf8(carry: &mut Vec<u8>, bytes: &[u8]) -> String {
    carry.extend_from_slice(bytes);
    let keep = incomplete_tail(carry);
    let cut = carry.len() - keep;
    let text = String::from_utf8_lossy(&carry[..cut]).into_owned();
    carry.drain(..cut);
    text
}

/// Length of a UTF-8 sequence that is cut off at the end of `b` (0 if none).
fn incomplete_tail(b: &[u8]) -> usize {
    for k in 1..=3.min(b.len()) {
        let c = b[b.len() - k];
        if c & 0xc0 == 0x80 {
            continue;
        }
        let need = match c {
            0xf0..=0xf7 => 4,
            0xe0..=0xef => 3,
            0xc0..=0xdf => 2,
            _ => 1,
        };
        return if need > k { k } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn ev(ms: u64, kind: TunnelEventKind) -> TunnelEvent {
        TunnelEvent {
            at: Duration::from_millis(ms),
            kind,
        }
    }

    #[test]
    fn asciicast_lines_and_split_characters() {
        let started = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let events = [
            ev(
                0,
                TunnelEventKind::Open {
                    protocol: "websocket v5.channel.k8s.io".into(),
                    tty: true,
                    started,
                },
            ),
            ev(
                10,
                TunnelEventKind::Resize {
                    width: 100,
                    height: 30,
                },
            ),
            ev(20, TunnelEventKind::Stdin(Bytes::from_static(b"ls\r"))),
            // "é" split across two events.
            ev(
                1500,
                TunnelEventKind::Stdout(Bytes::from_static(b"caf\xc3")),
            ),
            ev(
                1501,
                TunnelEventKind::Stderr(Bytes::from_static(b"\xa9\r\n")),
            ),
            ev(
                1600,
                TunnelEventKind::Exit {
                    code: Some(0),
                    status: None,
                },
            ),
        ];
        let cast = to_asciicast(&events, 80, 24);
        let lines: Vec<&str> = cast.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"version":2,"width":80,"height":24,"timestamp":1700000000}"#,
                r#"[0.01,"r","100x30"]"#,
                r#"[0.02,"i","ls\r"]"#,
                r#"[1.5,"o","caf"]"#,
                r#"[1.501,"o","é\r\n"]"#,
            ]
        );
    }
}
