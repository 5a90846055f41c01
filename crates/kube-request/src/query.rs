//! Query-string parsing with Go's `net/url` semantics, and typed accessors
//! for the parameters the gateway looks at.
//!
//! The API server reads the query with Go's `url.ParseQuery` and converts
//! values with apimachinery's parameter codec. The gateway must read the same
//! values the API server will act on, so both are mirrored here rather than
//! using a generic `application/x-www-form-urlencoded` parser.

use std::{borrow::Cow, time::Duration};

use crate::Error;

/// Parses a raw query string (without the `?`) into `(key, value)` pairs, in
/// order, percent-decoded, with `+` read as a space.
///
/// Mirrors Go's `url.ParseQuery` as used by `URL.Query()`: pairs are split on
/// `&`; empty pairs are skipped; a pair containing `;` is dropped (Go 1.17+);
/// a pair with a malformed `%` escape in its key or value is dropped; a pair
/// without `=` has an empty value. Decoded bytes that are not UTF-8 are
/// replaced with U+FFFD: Go would keep them, but every parameter the gateway
/// interprets is validated as text by the API server, which rejects them.
pub fn query_params(q: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pair in q.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(key), Some(value)) = (unescape(key), unescape(value)) {
            out.push((key, value));
        }
    }
    out
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` must be two hex digits.
fn unescape(s: &str) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(match String::from_utf8_lossy(&out) {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => s,
    })
}

/// A parsed query string with typed accessors.
///
/// Single-valued parameters use the *first* value, like Go's
/// `url.Values.Get` and apimachinery's conversions do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    params: Vec<(String, String)>,
}

// === impl Query ===

impl Query {
    /// Parses `raw` (without the `?`) with [`query_params`]; `None` is empty.
    pub fn parse(raw: Option<&str>) -> Self {
        Self {
            params: raw.map(query_params).unwrap_or_default(),
        }
    }

    /// All pairs, in order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The first value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` appears at all (even with an empty value).
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A boolean parameter as apimachinery's `Convert_Slice_string_To_bool`
    /// reads it: absent is `None`; the first value `0` or `false` (any case)
    /// is `false`; anything else, *including the empty string*, is `true`.
    pub fn bool_param(&self, key: &str) -> Option<bool> {
        self.get(key)
            .map(|v| !(v == "0" || v.eq_ignore_ascii_case("false")))
    }

    /// `watch`: turns a list into a watch.
    pub fn watch(&self) -> bool {
        self.bool_param("watch").unwrap_or(false)
    }

    /// `timeout`: how long the client waits, a Go duration (`2s`, `1m30s`, `1.5s`, `500ms`)
    /// as `time.ParseDuration` reads it; client-go sends `--request-timeout` here. `None` when
    /// absent, zero or not a duration.
    pub fn timeout(&self) -> Option<Duration> {
        let mut rest = self.get("timeout")?;
        let mut total = 0f64;
        while !rest.is_empty() {
            let n = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let value: f64 = rest[..n].parse().ok()?;
            rest = &rest[n..];
            let u = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = match &rest[..u] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return None,
            };
            total += value * unit;
            rest = &rest[u..];
        }
        (total > 0.0 && total.is_finite()).then(|| Duration::from_secs_f64(total.min(1e9)))
    }

    /// `dryRun`: true when the API server will run the request as a dry run
    /// and not persist it, i.e. at least one `dryRun` value is present and
    /// every value is `All` (the only value the API server accepts; any other
    /// value makes it reject the request).
    pub fn dry_run(&self) -> bool {
        let mut values = self.get_all("dryRun").peekable();
        values.peek().is_some() && values.all(|v| v == "All")
    }

    /// `labelSelector`, unparsed.
    pub fn label_selector(&self) -> Option<&str> {
        self.get("labelSelector")
    }

    /// `fieldSelector`, unparsed.
    pub fn field_selector(&self) -> Option<&str> {
        self.get("fieldSelector")
    }

    /// `container` (exec, attach, log).
    pub fn container(&self) -> Option<&str> {
        self.get("container")
    }

    /// `command` (exec): every value, in order; each is one argv element.
    pub fn command(&self) -> Vec<&str> {
        self.get_all("command").collect()
    }

    /// `stdin` (exec, attach).
    pub fn stdin(&self) -> bool {
        self.bool_param("stdin").unwrap_or(false)
    }

    /// `stdout` (exec, attach).
    pub fn stdout(&self) -> bool {
        self.bool_param("stdout").unwrap_or(false)
    }

    /// `stderr` (exec, attach).
    pub fn stderr(&self) -> bool {
        self.bool_param("stderr").unwrap_or(false)
    }

    /// `tty` (exec, attach).
    pub fn tty(&self) -> bool {
        self.bool_param("tty").unwrap_or(false)
    }

    /// `follow` (log).
    pub fn follow(&self) -> bool {
        self.bool_param("follow").unwrap_or(false)
    }

    /// `ports` (port-forward over WebSocket; SPDY clients send ports in
    /// stream headers instead, so this is often empty). Each value must be a
    /// port in 1..=65535, as the kubelet requires.
    pub fn ports(&self) -> Result<Vec<u16>, Error> {
        self.get_all("ports")
            .map(|v| match v.parse::<u16>() {
                Ok(p) if p != 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
                _ => Err(Error::InvalidPort {
                    value: v.to_owned(),
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
        want.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_params_follow_go_parse_query() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("a=1", &[("a", "1")]),
            ("a=1&b=2&a=3", &[("a", "1"), ("b", "2"), ("a", "3")]),
            ("a", &[("a", "")]),
            ("a=", &[("a", "")]),
            ("=v", &[("", "v")]),
            ("&&a=1&", &[("a", "1")]),
            ("a=x+y", &[("a", "x y")]),
            ("a=x%20y%2By", &[("a", "x y+y")]),
            (
                "command=echo%20hi&command=a%26b",
                &[("command", "echo hi"), ("command", "a&b")],
            ),
            ("k%3D=v%3D1", &[("k=", "v=1")]),
            ("a=1=2", &[("a", "1=2")]),
            // Go 1.17+ drops pairs with semicolons.
            ("a=1;b=2&c=3", &[("c", "3")]),
            // Malformed escapes drop the pair, not the query.
            ("a=%zz&b=%4&c=ok&d%g=1", &[("c", "ok")]),
            // Invalid UTF-8 is replaced, not kept.
            ("a=%FF", &[("a", "\u{fffd}")]),
        ];
        for (raw, want) in cases {
            assert_eq!(query_params(raw), pairs(want), "{raw:?}");
        }
    }

    #[test]
    fn bool_params_follow_apimachinery() {
        let cases: &[(&str, Option<bool>)] = &[
            ("", None),
            ("watch=true", Some(true)),
            ("watch=1", Some(true)),
            ("watch=yes", Some(true)),
            ("watch=", Some(true)),
            ("watch", Some(true)),
            ("watch=false", Some(false)),
            ("watch=FALSE", Some(false)),
            ("watch=0", Some(false)),
            // First value wins.
            ("watch=0&watch=1", Some(false)),
            ("watch=1&watch=0", Some(true)),
        ];
        for (raw, want) in cases {
            assert_eq!(
                Query::parse(Some(raw)).bool_param("watch"),
                *want,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn dry_run_only_when_every_value_is_all() {
        let cases: &[(&str, bool)] = &[
            ("", false),
            ("dryRun=All", true),
            ("dryRun=All&dryRun=All", true),
            ("dryRun=all", false),
            ("dryRun=", false),
            ("dryRun=All&dryRun=x", false),
        ];
        for (raw, want) in cases {
            assert_eq!(Query::parse(Some(raw)).dry_run(), *want, "{raw:?}");
        }
    }

    #[test]
    fn exec_and_log_accessors() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=echo+hi&container=app&stdin=true&stdout=1&stderr=false&tty=true&follow=true&labelSelector=app%3Dweb&fieldSelector=metadata.name%3Dx",
        ));
        assert_eq!(q.command(), ["sh", "-c", "echo hi"]);
        assert_eq!(q.container(), Some("app"));
        assert!(q.stdin() && q.stdout() && !q.stderr() && q.tty() && q.follow());
        assert_eq!(q.label_selector(), Some("app=web"));
        assert_eq!(q.field_selector(), Some("metadata.name=x"));
        assert!(!q.watch() && !q.dry_run());
        assert!(Query::parse(None).params().is_empty());
    }

    #[test]
    fn ports() {
        let cases: &[(&str, Result<Vec<u16>, Error>)] = &[
            ("", Ok(vec![])),
            ("ports=8080", Ok(vec![8080])),
            ("ports=8080&ports=9090", Ok(vec![8080, 9090])),
            ("ports=0", Err(Error::InvalidPort { value: "0".into() })),
            (
                "ports=65536",
                Err(Error::InvalidPort {
                    value: "65536".into(),
                }),
            ),
            (
                "ports=%2B80",
                Err(Error::InvalidPort {
                    value: "+80".into(),
                }),
            ),
            (
                "ports=80,81",
                Err(Error::InvalidPort {
                    value: "80,81".into(),
                }),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(&Query::parse(Some(raw)).ports(), want, "{raw:?}");
        }
    }

    #[test]
    fn timeouts_are_go_durations() {
        let t = |q: &str| Query::parse(Some(q)).timeout();
        assert_eq!(t("timeout=2s"), Some(Duration::from_secs(2)));
        assert_eq!(t("timeout=1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(t("timeout=1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(t("timeout=500ms"), Some(Duration::from_millis(500)));
        for bad in [
            "timeout=",
            "timeout=2",
            "timeout=2x",
            "timeout=0s",
            "other=2s",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
