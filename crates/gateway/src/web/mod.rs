//! The web UI on the admin listener (`docs/web.md`): OpenID Connect browser login
//! (authorization code + PKCE), then pages over the audit log.
//!
//! - [`auth`]: browser sessions, login state, CSRF: the layer every page stands on;
//! - [`oidc`]: the authorization code flow against the configured issuer;
//! - [`html`]: escaping, the page layout, security headers (CSP);
//! - [`pages`]: `/sessions` and `/sessions/{id}`;
//! - [`approvals`]: `/approvals`, `/approvals/{id}` and the approve and deny forms;
//! - `assets/`: the stylesheet and the recording player, compiled in (no CDN).
//!
//! # Adding a page (the approvals page, say)
//!
//! Write `web/approvals.rs` with handlers that take `&Web` and the [`auth::Authed`] that
//! [`Web::handle`] hands them, add their routes to the `match` in [`Web::route`], and:
//! - GET handlers just render with [`html::page`] (escape with [`html::esc`]; put
//!   `<input type="hidden" name="csrf" value="{who.csrf}">` in every form);
//! - POST routes are listed in `route`'s POST arm, which has already checked the session and
//!   the CSRF token ([`auth::Sessions::check_csrf`]) and parsed the form before the handler
//!   runs; handlers check `who.approver` for approver-only actions, and answer with a
//!   303 ([`html::redirect`]) back to a GET page.

pub mod approvals;
pub mod auth;
pub mod html;
pub mod oidc;
pub mod pages;

use std::{collections::HashMap, net::SocketAddr};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use self::{
    auth::{safe_next, Authed, Sessions},
    html::{esc, message, redirect},
};
use crate::{body::Body, config::WebSettings};

/// Largest form body accepted.
const MAX_FORM: usize = 16 * 1024;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The web UI: login, sessions and the audit store it reads.
pub struct Web {
    sessions: Sessions,
    login: oidc::Login,
    viewer_groups: Vec<String>,
    approver_groups: Vec<String>,
    pub(crate) store: store::Store,
    /// The approvals the JSON API decides too (`None`: pages say approvals are unavailable).
    pub(crate) approvals: Option<std::sync::Arc<::approvals::Approvals>>,
}

impl Web {
    /// Builds the web UI. `admin_addr` is the bound admin address, the base URL when none is
    /// configured. Does no network I/O.
    pub fn new(
        settings: &WebSettings,
        admin_addr: SocketAddr,
        store: store::Store,
    ) -> Result<Web, String> {
        let base_url = settings
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{admin_addr}"));
        Ok(Web {
            sessions: Sessions::new(settings.session_ttl, &base_url),
            login: oidc::Login::new(settings, &base_url)?,
            viewer_groups: settings.viewer_groups.clone(),
            approver_groups: settings.approver_groups.clone(),
            store,
            approvals: None,
        })
    }

    /// Serves `/approvals` from this store (the one the JSON API and the held calls use).
    pub fn with_approvals(mut self, approvals: std::sync::Arc<::approvals::Approvals>) -> Web {
        self.approvals = Some(approvals);
        self
    }

    /// Whether the web UI serves `path` (everything else stays with the admin listener).
    pub fn owns(path: &str) -> bool {
        path == "/"
            || path == "/sessions"
            || path.starts_with("/sessions/")
            || path == "/approvals"
            || path.starts_with("/approvals/")
            || path.starts_with("/auth/")
            || path.starts_with("/static/")
    }

    /// Serves one request. Pages need a session: without one a GET is sent to the login, a
    /// POST is refused.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        match (req.method(), path.as_str()) {
            (&Method::GET, "/static/app.js") => {
                return html::asset("text/javascript; charset=utf-8", APP_JS)
            }
            (&Method::GET, "/static/app.css") => {
                return html::asset("text/css; charset=utf-8", APP_CSS)
            }
            (&Method::GET, "/auth/login") => return self.begin_login(query.as_deref()).await,
            (&Method::GET, "/auth/callback") => {
                return self.callback(req.headers(), query.as_deref()).await
            }
            _ => {}
        }
        let who = self.sessions.lookup(req.headers());
        let method = req.method().clone();
        match method {
            Method::GET | Method::HEAD => match who {
                Some(who) => self.route(&who, &path, query.as_deref()).await,
                None => {
                    let next = match &query {
                        Some(q) => format!("{path}?{q}"),
                        None => path.clone(),
                    };
                    redirect(&format!("/auth/login?next={}", html::url_component(&next)))
                }
            },
            Method::POST => {
                let Some(who) = who else {
                    return message(
                        StatusCode::UNAUTHORIZED,
                        "Signed out",
                        None,
                        "your session has ended: sign in again",
                    );
                };
                let (parts, body) = req.into_parts();
                let form = match Limited::new(body, MAX_FORM).collect().await {
                    Ok(b) => url::form_urlencoded::parse(&b.to_bytes())
                        .into_owned()
                        .collect::<HashMap<String, String>>(),
                    Err(_) => {
                        return message(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "Refused",
                            Some(&who),
                            "the form is too large",
                        )
                    }
                };
                let token = form.get("csrf").map(String::as_str);
                if !self.sessions.check_csrf(&who, &parts.headers, token) {
                    return message(
                        StatusCode::FORBIDDEN,
                        "Refused",
                        Some(&who),
                        "this form is stale or came from another site (CSRF check failed): reload the page and try again",
                    );
                }
                self.post(&who, &parts.headers, &path, &form).await
            }
            _ => message(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                who.as_ref(),
                "method not allowed",
            ),
        }
    }

    /// GET routes for a signed-in user.
    async fn route(&self, who: &Authed, path: &str, query: Option<&str>) -> Response<Body> {
        match path {
            "/" => redirect("/sessions"),
            "/sessions" => pages::list(self, who, query).await,
            "/approvals" => approvals::list(self, who).await,
            _ => match (
                path.strip_prefix("/sessions/"),
                path.strip_prefix("/approvals/"),
            ) {
                (Some(id), _) if !id.is_empty() && !id.contains('/') => {
                    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                    pages::detail(self, who, &id, query).await
                }
                (_, Some(id)) if !id.is_empty() && !id.contains('/') => {
                    let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                    approvals::detail(self, who, &id).await
                }
                _ => message(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    Some(who),
                    "no such page",
                ),
            },
        }
    }

    /// POST routes, after the session and CSRF checks.
    async fn post(
        &self,
        who: &Authed,
        headers: &http::HeaderMap,
        path: &str,
        form: &HashMap<String, String>,
    ) -> Response<Body> {
        if let Some((id, verb @ ("approve" | "deny"))) = path
            .strip_prefix("/approvals/")
            .and_then(|rest| rest.split_once('/'))
        {
            if !id.is_empty() && !id.contains('/') {
                let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                return approvals::decide(self, who, &id, verb, form).await;
            }
        }
        match path {
            "/auth/logout" => {
                let clear = self.sessions.end(headers);
                tracing::info!(user = %who.user, "web: signed out");
                with_cookie(
                    message(StatusCode::OK, "Signed out", None, "you are signed out."),
                    &clear,
                )
            }
            _ => message(
                StatusCode::NOT_FOUND,
                "Not found",
                Some(who),
                "no such action",
            ),
        }
    }

    /// GET /auth/login?next=PATH: remember the login server-side, send the browser to the IdP.
    async fn begin_login(&self, query: Option<&str>) -> Response<Body> {
        let next = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "next")
            .map(|(_, v)| v.into_owned())
            .filter(|n| safe_next(n))
            .unwrap_or_else(|| "/sessions".to_owned());
        let Some((state, nonce, verifier, cookie)) = self.sessions.begin_login(next) else {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                None,
                "too many logins in progress",
            );
        };
        match self.login.authorize_url(&state, &nonce, &verifier).await {
            Ok(url) => {
                let mut r = redirect(&url);
                *r.status_mut() = StatusCode::FOUND;
                with_cookie(r, &cookie)
            }
            Err(e) => {
                tracing::warn!(error = %e, "web: cannot start a login");
                message(
                    StatusCode::BAD_GATEWAY,
                    "Sign-in unavailable",
                    None,
                    &e.to_string(),
                )
            }
        }
    }

    /// GET /auth/callback?code=&state=: finish the login, check the groups, open a session.
    async fn callback(&self, headers: &http::HeaderMap, query: Option<&str>) -> Response<Body> {
        let q: HashMap<String, String> =
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let clear = self.sessions.clear_login_cookie();
        let fail =
            |status, text: &str| with_cookie(message(status, "Sign-in failed", None, text), &clear);
        let Some(pending) = self
            .sessions
            .finish_login(headers, q.get("state").map_or("", String::as_str))
        else {
            return fail(
                StatusCode::BAD_REQUEST,
                "this sign-in was not started here, was already used or took too long: start again",
            );
        };
        if let Some(err) = q.get("error") {
            return fail(
                StatusCode::FORBIDDEN,
                &format!("the identity provider answered {err:?}"),
            );
        }
        let Some(code) = q.get("code") else {
            return fail(StatusCode::BAD_REQUEST, "no authorization code");
        };
        let id = match self
            .login
            .finish(code, &pending.verifier, &pending.nonce)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "web: login failed");
                return fail(StatusCode::FORBIDDEN, &e.to_string());
            }
        };
        let member = |list: &[String]| id.groups.iter().any(|g| list.contains(g));
        let approver = member(&self.approver_groups);
        if !approver && !member(&self.viewer_groups) {
            tracing::info!(user = %id.user, "web: sign-in refused, in no allowed group");
            return with_cookie(
                message(
                    StatusCode::FORBIDDEN,
                    "Not allowed",
                    None,
                    &format!(
                        "{} is signed in at the identity provider but is in none of the groups allowed to use Airlock's web UI",
                        id.user
                    ),
                ),
                &clear,
            );
        }
        let Some(session_cookie) = self.sessions.create(id.user.clone(), id.groups, approver)
        else {
            return fail(StatusCode::SERVICE_UNAVAILABLE, "too many sessions");
        };
        tracing::info!(user = %id.user, approver, "web: signed in");
        // A page that moves on by itself rather than a redirect: browsers do not send
        // SameSite=Strict cookies on a redirect chain that began at another site (the IdP),
        // so the first page after login would look signed out.
        let next = esc(&pending.next);
        let body = format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={next}"><title>Signed in · Airlock</title></head><body><p>Signed in. <a href="{next}">Continue</a>.</p></body></html>"#
        );
        let mut r = html::page(StatusCode::OK, "Signed in", None, "");
        *r.body_mut() = crate::body::full(body);
        let r = with_cookie(r, &session_cookie);
        with_cookie(r, &clear)
    }
}

fn with_cookie(mut r: Response<Body>, cookie: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
