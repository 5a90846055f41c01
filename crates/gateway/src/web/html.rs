//! Escaping, the page layout and response helpers. Every page goes through [`page`], so every
//! HTML response carries the same security headers.

use std::fmt::Write as _;

use http::{header, HeaderValue, Response, StatusCode};

use super::auth::Authed;
use crate::body::{self, Body};

/// The Content-Security-Policy of every page: only this origin's script and style files (no
/// inline script, no inline style, no `eval`), no plugins, no framing, forms post here only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes one path segment or query value (everything but RFC 3986 unreserved).
pub fn url_component(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// JSON for a `<script type="application/json">` block: `<`, `>` and `&` are escaped as
/// `\u003c`... so the text can never close the element or open a comment.
pub fn json_in_html(v: &serde_json::Value) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `body` is trusted HTML (already escaped by the caller).
pub fn page(status: StatusCode, title: &str, who: Option<&Authed>, body: &str) -> Response<Body> {
    let mut nav = String::new();
    if let Some(a) = who {
        let _ = write!(
            nav,
            r#"<nav><a href="/sessions">Sessions</a> <a href="/approvals">Approvals</a>
<span class="who">{user}{role}</span>
<form method="post" action="/auth/logout" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">Sign out</button></form></nav>"#,
            user = esc(&a.user),
            role = if a.approver { " (approver)" } else { "" },
            csrf = esc(&a.csrf),
        );
    }
    let csrf_meta = who
        .map(|a| format!(r#"<meta name="csrf-token" content="{}">"#, esc(&a.csrf)))
        .unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
{csrf_meta}<title>{title} · Airlock</title><link rel="stylesheet" href="/static/app.css"></head>
<body><header><a class="brand" href="/sessions">Airlock</a>{nav}</header>
<main><h1>{title}</h1>
{body}</main><script src="/static/app.js"></script></body></html>
"#,
        title = esc(title),
    );
    let mut r = Response::new(body::full(html));
    *r.status_mut() = status;
    set_headers(&mut r, "text/html; charset=utf-8");
    r
}

/// A short page with one message (errors, refusals).
pub fn message(
    status: StatusCode,
    title: &str,
    who: Option<&Authed>,
    text: &str,
) -> Response<Body> {
    page(status, title, who, &format!("<p>{}</p>", esc(text)))
}

/// 303 to a same-origin path.
pub fn redirect(location: &str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    set_headers(&mut r, "text/plain; charset=utf-8");
    r
}

/// A static asset, cacheable for a short while.
pub fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    set_headers(&mut r, content_type);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    r
}

fn set_headers(r: &mut Response<Body>, content_type: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // No URL (the callback's holds the authorization code) leaks to another origin in Referer.
    // Not `no-referrer`: with it, browsers send `Origin: null` on same-origin form posts, and
    // the CSRF check needs the real origin.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("<script>&\"'", "&lt;script&gt;&amp;&quot;&#39;"),
            (
                "kubectl get pods -l 'a=b'",
                "kubectl get pods -l &#39;a=b&#39;",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(esc(input), *want);
        }
        assert_eq!(
            url_component("agent@demo@2026-01-01T00:00:00Z"),
            "agent%40demo%402026-01-01T00%3A00%3A00Z"
        );
        let v = serde_json::json!({"t": "</script><!--&"});
        assert_eq!(
            json_in_html(&v),
            r#"{"t":"\u003c/script\u003e\u003c!--\u0026"}"#
        );
    }
}
