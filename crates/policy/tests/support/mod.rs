//! A request builder for the behaviour tables: real paths parsed by
//! `kube_request::parse`, realistic bodies parsed by `policy::parse_object`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use authn::Identity;
use kube_request::{RequestInfo, RequestParts};
use policy::{Decision, Policy, RequestContext};
use serde_json::Value;

#[derive(Clone)]
pub struct Req {
    pub info: RequestInfo,
    pub method: String,
    pub identity: Identity,
    pub cluster: String,
    pub headers: BTreeMap<String, String>,
    pub object: Option<Value>,
}

/// An agent (group `ai-agents`) request for `method path?query`.
pub fn req(method: &str, path_and_query: &str) -> Req {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let info = kube_request::parse(&RequestParts {
        method,
        path,
        query,
        content_type: Some("application/json"),
    })
    .unwrap_or_else(|e| panic!("{method} {path_and_query}: {e}"));
    Req {
        info,
        method: method.to_string(),
        identity: Identity {
            user: "agent-1".into(),
            uid: Some("u-1".into()),
            groups: vec!["ai-agents".into()],
            client_id: Some("claude-code".into()),
            session_id: Some("s-1".into()),
            issuer: Some("https://idp.example.com".into()),
            expires_at: None,
        },
        cluster: "prod".into(),
        headers: BTreeMap::new(),
        object: None,
    }
}

impl Req {
    pub fn body(mut self, object: Value) -> Self {
        self.object = Some(object);
        self
    }

    /// A body as the client sent it, parsed by its content type.
    pub fn raw_body(mut self, content_type: &str, body: &str) -> Self {
        self.headers
            .insert("content-type".into(), content_type.into());
        self.object = policy::parse_object(Some(content_type), body.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        self
    }

    pub fn user(mut self, user: &str, groups: &[&str]) -> Self {
        self.identity.user = user.into();
        self.identity.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }

    pub fn client_id(mut self, client_id: Option<&str>) -> Self {
        self.identity.client_id = client_id.map(Into::into);
        self
    }

    pub fn cluster(mut self, cluster: &str) -> Self {
        self.cluster = cluster.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Overrides the verb: for verbs no HTTP request produces directly
    /// (`escalate`, `bind`, `impersonate`).
    pub fn verb(mut self, verb: &str) -> Self {
        self.info.verb = verb.into();
        self
    }

    pub fn ctx(&self) -> RequestContext<'_> {
        RequestContext {
            cluster: &self.cluster,
            info: &self.info,
            identity: &self.identity,
            method: &self.method,
            headers: self.headers.clone(),
            object: self.object.as_ref(),
        }
    }

    pub fn decide(&self, policy: &Policy) -> Decision {
        policy.evaluate(&self.ctx())
    }
}

/// The rule a decision names, or `-` for a default.
pub fn decided_by(d: &Decision) -> String {
    match &d.basis {
        policy::Basis::Rule { rule } => rule.to_string(),
        _ => "-".to_string(),
    }
}

pub fn matched(d: &Decision) -> Vec<String> {
    d.matched.iter().map(|m| m.name.to_string()).collect()
}
