//! pods/log: deterministic container logs, optionally followed.

use super::{bad_request, flag, full_body, param, pick_container, query_pairs, PodContext};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{body::Incoming, Request, Response};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::mpsc;

/// Lines of history every container has.
const HISTORY: u64 = 30;
/// Seconds between history lines.
const HISTORY_STEP: i64 = 7;
/// Interval between new lines when following.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

pub(super) fn serve(ctx: PodContext, req: Request<Incoming>) -> Response<crate::Body> {
    let q = query_pairs(&req);
    let container = match pick_container(&ctx, param(&q, "container")) {
        Ok(c) => c.name,
        Err(resp) => return *resp,
    };
    if flag(&q, "previous") {
        return bad_request(&format!(
            "previous terminated container \"{container}\" in pod \"{}\" not found",
            ctx.name
        ));
    }
    let num = |k: &str| -> Result<Option<i64>, super::Rejection> {
        match param(&q, k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Box::new(bad_request(&format!("invalid value for {k}: {v:?}")))),
        }
    };
    let (tail, since, limit) = match (num("tailLines"), num("sinceSeconds"), num("limitBytes")) {
        (Ok(t), Ok(s), Ok(l)) => (t, s, l),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return *r,
    };
    if limit.is_some_and(|l| l <= 0) {
        return bad_request("limitBytes must be greater than zero");
    }
    let opts = Opts {
        timestamps: flag(&q, "timestamps"),
        limit: limit.map(|l| l as usize),
    };
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut lines: Vec<(OffsetDateTime, String)> = (0..HISTORY)
        .map(|i| {
            let ts = now - time::Duration::seconds((HISTORY as i64 - i as i64) * HISTORY_STEP);
            (ts, line(&ctx.name, &container, i, ts))
        })
        .collect();
    if let Some(s) = since {
        let cutoff = now - time::Duration::seconds(s.max(0));
        lines.retain(|(ts, _)| *ts >= cutoff);
    }
    if let Some(t) = tail {
        let t = t.max(0) as usize;
        let skip = lines.len().saturating_sub(t);
        lines.drain(..skip);
    }
    let mut written = 0usize;
    let mut history = Vec::new();
    for (ts, l) in &lines {
        if !opts.append(&mut history, &mut written, *ts, l) {
            break;
        }
    }
    let mut resp = if flag(&q, "follow") && opts.limit.is_none_or(|l| written < l) {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let (pod, ctr) = (ctx.name.clone(), container.clone());
        tokio::spawn(async move {
            if tx.send(Bytes::from(history)).await.is_err() {
                return;
            }
            let mut i = HISTORY;
            let mut ticker = tokio::time::interval(FOLLOW_INTERVAL);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let ts = OffsetDateTime::now_utc();
                let mut chunk = Vec::new();
                let more = opts.append(&mut chunk, &mut written, ts, &line(&pod, &ctr, i, ts));
                // A failed send means hyper dropped the body: the client disconnected.
                if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                    return;
                }
                if !more {
                    return;
                }
                i += 1;
            }
        });
        Response::new(ChannelBody { rx }.boxed())
    } else {
        Response::new(full_body(history))
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

#[derive(Clone, Copy)]
struct Opts {
    timestamps: bool,
    limit: Option<usize>,
}

impl Opts {
    /// Appends one line honouring `timestamps` and `limitBytes`; false once the limit is hit.
    fn append(&self, out: &mut Vec<u8>, written: &mut usize, ts: OffsetDateTime, l: &str) -> bool {
        let mut text = String::new();
        if self.timestamps {
            text.push_str(&ts.format(&Rfc3339).unwrap_or_default());
            text.push(' ');
        }
        text.push_str(l);
        text.push('\n');
        let bytes = text.as_bytes();
        let take = match self.limit {
            Some(l) => bytes.len().min(l.saturating_sub(*written)),
            None => bytes.len(),
        };
        out.extend_from_slice(&bytes[..take]);
        *written += take;
        self.limit.is_none_or(|l| *written < l)
    }
}

/// A body fed by a channel: each message is one chunk, flushed as it arrives.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Deterministic line `i` of a container's log.
fn line(pod: &str, container: &str, i: u64, ts: OffsetDateTime) -> String {
    const PATHS: [&str; 6] = [
        "/",
        "/products",
        "/products/42",
        "/cart",
        "/api/checkout",
        "/healthz",
    ];
    const STATUS: [u16; 6] = [200, 200, 200, 304, 201, 200];
    let clf = format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        ts.day(),
        month_abbrev(ts.month()),
        ts.year(),
        ts.hour(),
        ts.minute(),
        ts.second()
    );
    let k = (i % 6) as usize;
    if pod.starts_with("payments-worker") {
        return match i % 8 {
            0 => "starting payments worker v2.4.1".to_owned(),
            1 => "connecting with AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            2 => "DATABASE_URL=postgres://payments:Pa55-w0rd-Payments@db:5432/payments".to_owned(),
            3 => "calling ledger api with header Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwYXltZW50cy13b3JrZXIiLCJpYXQiOjE3MDAwMDAwMDB9.c2ltdWxhdGVkLXNpZ25hdHVyZS1ub3QtcmVhbA".to_owned(),
            4 => "loaded signing key: -----BEGIN RSA PRIVATE KEY----- MIIEowIBAAKCAQEAsimulatedkeymaterialnotarealkey0123456789abcdef -----END RSA PRIVATE KEY-----".to_owned(),
            5 => format!("processed batch {} (12 charges, 0 failures)", 1000 + i),
            6 => format!("job {} settled amount=49.99 currency=EUR", 5000 + i),
            _ => "heartbeat ok".to_owned(),
        };
    }
    match container {
        "log-shipper" => format!(
            "[{}/{:02}/{:02} {:02}:{:02}:{:02}] [ info] [output:forward:forward.0] flushed {} records",
            ts.year(),
            u8::from(ts.month()),
            ts.day(),
            ts.hour(),
            ts.minute(),
            ts.second(),
            3 + i % 9
        ),
        _ if pod.starts_with("web-") => format!(
            "10.244.1.{} - - [{clf}] \"GET {} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
            10 + i % 40,
            PATHS[k],
            STATUS[k],
            512 + (i * 37) % 4096
        ),
        _ if pod.starts_with("coredns") => format!(
            "[INFO] 10.244.0.{}:{} - {} \"A IN web.shop.svc.cluster.local. udp 44 false 512\" NOERROR qr,aa,rd 106 0.000{}s",
            5 + i % 20,
            40000 + i * 13,
            1000 + i * 7,
            100 + i % 800
        ),
        _ if pod.starts_with("api-") => format!(
            "{{\"level\":\"info\",\"msg\":\"request completed\",\"path\":\"/v1/charges\",\"status\":{},\"duration_ms\":{}}}",
            STATUS[k],
            3 + (i * 7) % 50
        ),
        _ => format!("{container}: tick {i}"),
    }
}

fn month_abbrev(m: time::Month) -> &'static str {
    use time::Month::*;
    match m {
        January => "Jan",
        February => "Feb",
        March => "Mar",
        April => "Apr",
        May => "May",
        June => "Jun",
        July => "Jul",
        August => "Aug",
        September => "Sep",
        October => "Oct",
        November => "Nov",
        December => "Dec",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bytes_truncates() {
        let o = Opts {
            timestamps: false,
            limit: Some(5),
        };
        let (mut out, mut n) = (Vec::new(), 0);
        assert!(!o.append(&mut out, &mut n, OffsetDateTime::UNIX_EPOCH, "hello world"));
        assert_eq!(out, b"hello");
    }

    #[test]
    fn payments_worker_leaks_credentials() {
        let all: String = (0..8)
            .map(|i| line("payments-worker-0", "worker", i, OffsetDateTime::UNIX_EPOCH))
            .collect();
        for needle in [
            "AWS_SECRET_ACCESS_KEY=",
            "DATABASE_URL=postgres://",
            "Bearer eyJ",
            "BEGIN RSA PRIVATE KEY",
        ] {
            assert!(all.contains(needle), "{needle}");
        }
    }

    #[test]
    fn web_lines_look_like_nginx() {
        let l = line("web-6b7f9c5d4-x2k9p", "app", 1, OffsetDateTime::UNIX_EPOCH);
        assert!(l.contains("\"GET /products HTTP/1.1\" 200"), "{l}");
        assert!(l.contains("[01/Jan/1970:00:00:00 +0000]"), "{l}");
    }
}
