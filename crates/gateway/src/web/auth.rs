//! Browser sessions, login state and CSRF: the layer every page stands on.
//!
//! - **Session**: after a login, the browser holds `airlock_session`, 32 random bytes,
//!   `HttpOnly; SameSite=Strict; Path=/` (`Secure` when the base URL is https). The server
//!   keeps what it stands for (user, groups, role, CSRF token, expiry) in memory: a restart
//!   signs everyone out, and sign-out really ends the session.
//! - **Login state**: `state`, `nonce` and the PKCE `code_verifier` stay on the server, keyed by
//!   `state`; the browser gets only `state`, in `airlock_login` (`HttpOnly; SameSite=Lax;
//!   Path=/auth/`, ten minutes), and the callback must present both the cookie and the same
//!   `state` in the URL. That binds the callback to the browser that started the login (no
//!   login CSRF), and each state works once.
//! - **CSRF**: every state-changing request is a POST that must carry the session's CSRF token
//!   (form field `csrf` or header `X-CSRF-Token`, compared in constant time), must not come
//!   from another origin (`Origin` / `Sec-Fetch-Site`), and rides on a `SameSite=Strict`
//!   cookie that other sites cannot make the browser send.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::Engine as _;
use http::{header, HeaderMap};
use rand::RngCore;

/// The browser session cookie.
pub const SESSION_COOKIE: &str = "airlock_session";
/// The login-in-progress cookie (holds `state` only).
pub const LOGIN_COOKIE: &str = "airlock_login";
/// How long a started login may take.
const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Bounds on the in-memory tables, so unauthenticated clients cannot grow them without end.
const MAX_SESSIONS: usize = 10_000;
const MAX_PENDING: usize = 10_000;

/// A signed-in user, as a page sees them.
#[derive(Clone, Debug)]
pub struct Authed {
    pub user: String,
    pub groups: Vec<String>,
    /// This session's CSRF token: put it in every form (`csrf`) or `X-CSRF-Token` header.
    pub csrf: String,
    /// Member of an approver group: may approve and deny.
    pub approver: bool,
}

/// A login in progress.
#[derive(Debug)]
pub struct Pending {
    pub nonce: String,
    pub verifier: String,
    /// Where to go after login (a same-origin path).
    pub next: String,
    created: Instant,
}

struct Entry {
    authed: Authed,
    expires: Instant,
}

/// Sessions and logins in progress.
pub struct Sessions {
    ttl: Duration,
    /// `Secure` on cookies (https base URL).
    secure: bool,
    /// `scheme://host[:port]` of the base URL: the only `Origin` accepted on POSTs.
    origin: String,
    sessions: Mutex<HashMap<String, Entry>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// 32 random bytes, base64url.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoned only by a panic while holding it; the maps are still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// === impl Sessions ===

impl Sessions {
    pub fn new(ttl: Duration, base_url: &str) -> Sessions {
        let origin = url::Url::parse(base_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        Sessions {
            ttl,
            secure: base_url.starts_with("https://"),
            origin,
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn cookie_attrs(&self, same_site: &str, path: &str, max_age: u64) -> String {
        format!(
            "; HttpOnly; SameSite={same_site}; Path={path}; Max-Age={max_age}{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// Starts a login: returns `(state, nonce, code_verifier, Set-Cookie)`, or `None` when
    /// too many logins are in progress.
    pub fn begin_login(&self, next: String) -> Option<(String, String, String, String)> {
        let state = random_token();
        let nonce = random_token();
        let verifier = random_token();
        let mut pending = lock(&self.pending);
        pending.retain(|_, p| p.created.elapsed() < LOGIN_TTL);
        if pending.len() >= MAX_PENDING {
            return None;
        }
        pending.insert(
            state.clone(),
            Pending {
                nonce: nonce.clone(),
                verifier: verifier.clone(),
                next,
                created: Instant::now(),
            },
        );
        let cookie = format!(
            "{LOGIN_COOKIE}={state}{}",
            self.cookie_attrs("Lax", "/auth/", LOGIN_TTL.as_secs())
        );
        Some((state, nonce, verifier, cookie))
    }

    /// Takes the login that `state` names, if this browser started it (its login cookie
    /// holds the same state) and it has not expired. Works once.
    pub fn finish_login(&self, headers: &HeaderMap, state: &str) -> Option<Pending> {
        let from_cookie = cookie(headers, LOGIN_COOKIE)?;
        if state.is_empty() || !ct_eq(from_cookie, state) {
            return None;
        }
        let p = lock(&self.pending).remove(state)?;
        (p.created.elapsed() < LOGIN_TTL).then_some(p)
    }

    /// Clears the login cookie.
    pub fn clear_login_cookie(&self) -> String {
        format!("{LOGIN_COOKIE}={}", self.cookie_attrs("Lax", "/auth/", 0))
    }

    /// A new session; returns its `Set-Cookie`, or `None` when the table is full.
    pub fn create(&self, user: String, groups: Vec<String>, approver: bool) -> Option<String> {
        let token = random_token();
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, e| e.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            return None;
        }
        sessions.insert(
            token.clone(),
            Entry {
                authed: Authed {
                    user,
                    groups,
                    csrf: random_token(),
                    approver,
                },
                expires: now + self.ttl,
            },
        );
        Some(format!(
            "{SESSION_COOKIE}={token}{}",
            self.cookie_attrs("Strict", "/", self.ttl.as_secs())
        ))
    }

    /// The session the request's cookie names, if it is live.
    pub fn lookup(&self, headers: &HeaderMap) -> Option<Authed> {
        let token = cookie(headers, SESSION_COOKIE)?;
        let sessions = lock(&self.sessions);
        let e = sessions.get(token)?;
        (e.expires > Instant::now()).then(|| e.authed.clone())
    }

    /// Ends the request's session; returns the `Set-Cookie` that clears the cookie.
    pub fn end(&self, headers: &HeaderMap) -> String {
        if let Some(token) = cookie(headers, SESSION_COOKIE) {
            lock(&self.sessions).remove(token);
        }
        format!("{SESSION_COOKIE}={}", self.cookie_attrs("Strict", "/", 0))
    }

    /// Whether a state-changing request may act for `who`: same origin, and the session's
    /// CSRF token in the `csrf` form field or the `X-CSRF-Token` header.
    pub fn check_csrf(&self, who: &Authed, headers: &HeaderMap, form_token: Option<&str>) -> bool {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            if origin != self.origin {
                return false;
            }
        }
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("same-origin");
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
        let header_token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        match form_token.or(header_token) {
            Some(t) => ct_eq(t, &who.csrf),
            None => false,
        }
    }
}

/// Whether `next` is a path on this site (not `//host`, not a URL, no backslash tricks).
pub fn safe_next(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn login_state_is_bound_to_the_browser_and_used_once() {
        let s = Sessions::new(Duration::from_secs(60), "http://127.0.0.1:9");
        let (state, _, _, set) = s.begin_login("/sessions".into()).unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax"),
            "{set}"
        );
        // Another browser (no cookie, or a different one) cannot finish it.
        assert!(s.finish_login(&headers(&[]), &state).is_none());
        let other = headers(&[("cookie", "airlock_login=x")]);
        assert!(s.finish_login(&other, &state).is_none());
        let mine = headers(&[("cookie", &format!("a=b; airlock_login={state}"))]);
        assert_eq!(s.finish_login(&mine, &state).unwrap().next, "/sessions");
        assert!(s.finish_login(&mine, &state).is_none(), "used twice");
    }

    #[test]
    fn sessions_and_csrf() {
        let s = Sessions::new(Duration::from_secs(60), "http://127.0.0.1:9");
        let set = s.create("alice".into(), vec![], true).unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains("Secure"));
        let token = set.split(';').next().unwrap();
        let h = headers(&[("cookie", token)]);
        let who = s.lookup(&h).unwrap();
        assert_eq!(who.user, "alice");
        let csrf = who.csrf.clone();
        // (extra headers, form token, allowed)
        type Case<'a> = (Vec<(&'static str, &'a str)>, Option<&'a str>, bool);
        let cases: Vec<Case> = vec![
            (vec![], Some(&csrf), true),
            (vec![], None, false),
            (vec![], Some("wrong"), false),
            (vec![("x-csrf-token", &csrf)], None, true),
            (vec![("origin", "http://127.0.0.1:9")], Some(&csrf), true),
            (vec![("origin", "http://evil.example")], Some(&csrf), false),
            (vec![("sec-fetch-site", "cross-site")], Some(&csrf), false),
            (vec![("sec-fetch-site", "same-site")], Some(&csrf), false),
        ];
        for (extra, form, want) in cases {
            let got = s.check_csrf(&who, &headers(&extra), form);
            assert_eq!(got, want, "{extra:?} {form:?}");
        }
        s.end(&h);
        assert!(s.lookup(&h).is_none());
    }

    #[test]
    fn next_paths() {
        let cases = [
            ("/sessions", true),
            ("/sessions/a%40b?x=1", true),
            ("//evil.example/", false),
            ("https://evil.example/", false),
            ("/\\evil.example", false),
            ("sessions", false),
        ];
        for (next, want) in cases {
            assert_eq!(safe_next(next), want, "{next}");
        }
    }
}
