//! HTTP helpers: response building, content negotiation and query parsing.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use serde_json::Value;

use crate::error::ApiError;
use crate::Body;

/// A full body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A JSON response with the given content type.
pub fn json_with_type(code: u16, v: &Value, content_type: &str) -> Response<Body> {
    let mut bytes = serde_json::to_vec(&in_go_order(v)).unwrap_or_default();
    bytes.push(b'\n');
    let mut r = Response::new(full(bytes));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(h) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, h);
    }
    r
}

/// `v` with its object, or each of its list's items, in kube-apiserver's member order
/// ([`crate::store::go_order`]): objects built on the way out (a pod's status) are too.
pub fn in_go_order(v: &Value) -> std::borrow::Cow<'_, Value> {
    if v.get("metadata").is_none() {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut v = v.clone();
    crate::store::go_order(&mut v);
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(crate::store::go_order);
    }
    std::borrow::Cow::Owned(v)
}

/// A plain JSON response.
pub fn json(code: u16, v: &Value) -> Response<Body> {
    json_with_type(code, v, "application/json")
}

/// A `Status` response for an error.
pub fn error(e: &ApiError) -> Response<Body> {
    json(e.code, &e.to_status())
}

/// A text/plain response.
pub fn text(code: u16, s: &str) -> Response<Body> {
    let mut r = Response::new(full(s.to_string()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// How a response body should be rendered, from the Accept header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Plain JSON of the object or list.
    Json,
    /// YAML.
    Yaml,
    /// `meta.k8s.io` Table in the given version (`v1`, `v1beta1`).
    Table(String),
    /// `PartialObjectMetadata(List)` in the given version.
    Metadata(String),
}

// === impl Output ===

impl Output {
    /// The Content-Type to answer with.
    pub fn content_type(&self) -> String {
        match self {
            Output::Json => "application/json".into(),
            Output::Yaml => "application/yaml".into(),
            Output::Table(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
            Output::Metadata(v) => {
                format!("application/json;as=PartialObjectMetadata;v={v};g=meta.k8s.io")
            }
        }
    }
}

/// One media range of an Accept header: type and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// `application/json`.
    pub mime: String,
    /// Parameters, lowercase keys.
    pub params: HashMap<String, String>,
}

/// Splits an Accept header into media ranges, in order.
pub fn parse_accept(accept: &str) -> Vec<MediaRange> {
    accept
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let mime = it.next()?.trim().to_ascii_lowercase();
            if mime.is_empty() {
                return None;
            }
            let params = it
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| {
                    (
                        k.trim().to_ascii_lowercase(),
                        v.trim().trim_matches('"').to_string(),
                    )
                })
                .collect();
            Some(MediaRange { mime, params })
        })
        .collect()
}

/// Chooses the output for an object or list endpoint. Protobuf and CBOR are skipped (we
/// speak JSON only), so kubectl's `protobuf,json` lists get JSON; an Accept that allows only
/// them is 406, as for a server without those serializers.
pub fn negotiate(accept: Option<&str>) -> Result<Output, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for r in parse_accept(accept) {
        let json_like = matches!(
            r.mime.as_str(),
            "application/json" | "*/*" | "application/*"
        );
        if json_like {
            let g = r.params.get("g").map(String::as_str);
            let v = r.params.get("v").cloned().unwrap_or_else(|| "v1".into());
            match r.params.get("as").map(String::as_str) {
                None => return Ok(Output::Json),
                Some("Table") if g == Some("meta.k8s.io") && (v == "v1" || v == "v1beta1") => {
                    return Ok(Output::Table(v))
                }
                Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                    if g == Some("meta.k8s.io") && (v == "v1" || v == "v1beta1") =>
                {
                    return Ok(Output::Metadata(v))
                }
                Some(_) => continue,
            }
        }
        if r.mime == "application/yaml" {
            return Ok(Output::Yaml);
        }
    }
    Err(ApiError::new(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json, application/yaml",
    ))
}

/// Query parameters; a repeated one keeps its first value, as kube-apiserver's conversion of
/// `url.Values` into options (`Convert_Slice_string_To_*` reads `in[0]`) and Airlock's
/// `kube_request::Query` do. Taking another value than the gateway would let a request be
/// judged as one thing and served as another.
pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned() {
        out.entry(k).or_insert(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_parameter_keeps_its_first_value() {
        let q = parse_query(Some("watch=0&watch=1&limit=5"));
        assert_eq!(q["watch"], "0");
        assert_eq!(q["limit"], "5");
    }

    #[test]
    fn negotiation_table() {
        let cases: &[(Option<&str>, Result<Output, u16>)] = &[
            (None, Ok(Output::Json)),
            (Some("application/json"), Ok(Output::Json)),
            (Some("application/vnd.kubernetes.protobuf,application/json"), Ok(Output::Json)),
            (Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"), Ok(Output::Table("v1".into()))),
            (Some("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"), Ok(Output::Metadata("v1".into()))),
            (Some("application/json;as=Foo;v=v1;g=x,application/yaml"), Ok(Output::Yaml)),
            (Some("*/*"), Ok(Output::Json)),
            (Some("application/vnd.kubernetes.protobuf"), Err(406)),
            (Some("application/cbor"), Err(406)),
        ];
        for (accept, want) in cases {
            let got = negotiate(*accept).map_err(|e| e.code);
            assert_eq!(&got, want, "{accept:?}");
        }
    }
}
