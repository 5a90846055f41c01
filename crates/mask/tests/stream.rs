//! Streaming behaviour at scale and at every chunk boundary, plus a property test that masking
//! never breaks JSON validity.

use aho_corasick::AhoCorasick;
use base64::Engine as _;
use mask::{BodyKind, MaskConfig, MaskContext, Masker, StreamMasker};
use proptest::prelude::*;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn masker() -> Masker {
    Masker::new(MaskConfig::new(b"integration-key".to_vec())).unwrap()
}

fn run(stream: &mut dyn StreamMasker, body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for c in body.chunks(chunk.max(1)) {
        stream.push(c, &mut out).unwrap();
    }
    stream.finish(&mut out).unwrap();
    out
}

/// A real value that needs JSON escaping, so its escaped form is a distinct needle.
fn real_value(i: usize) -> String {
    format!(
        "pw-{i:06}-\"q\"\\n-tail-{}-and-some-more",
        i * 7919 % 100_003
    )
}

fn secret(i: usize) -> Value {
    json!({
        "metadata": {"name": format!("s-{i}"), "namespace": "default", "resourceVersion": i.to_string()},
        "data": {"password": B64.encode(real_value(i)), "token": B64.encode(format!("tok{i:08}xyz"))},
        "stringData": {"plain": real_value(i + 1_000_000)},
        "type": "Opaque"
    })
}

/// Issue: a 20,000-Secret list streamed in 64 KiB chunks is masked with memory bounded by one
/// item, and no real value, its base64 or its JSON-escaped form reaches the output.
#[test]
fn twenty_thousand_secrets_bounded_memory_no_leak() {
    const N: usize = 20_000;
    let items: Vec<Value> = (0..N).map(secret).collect();
    let body = serde_json::to_vec(&json!({
        "kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": "42"}, "items": items
    }))
    .unwrap();
    let largest_item = items
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap().len())
        .max()
        .unwrap();

    let m = masker();
    let mut stream = m
        .stream(BodyKind::Json, &MaskContext::for_resource("secrets", None))
        .unwrap();
    let out = run(stream.as_mut(), &body, 64 * 1024);
    assert!(
        stream.peak_buffered() <= largest_item + 256,
        "peak {} for items of at most {largest_item}",
        stream.peak_buffered()
    );

    let mut needles = Vec::new();
    for i in 0..N {
        for v in [
            real_value(i),
            real_value(i + 1_000_000),
            format!("tok{i:08}xyz"),
        ] {
            let escaped = serde_json::to_string(&v).unwrap();
            needles.push(escaped[1..escaped.len() - 1].to_string());
            needles.push(B64.encode(&v));
            needles.push(v);
        }
    }
    let finder = AhoCorasick::new(&needles).unwrap();
    if let Some(hit) = finder.find(&out) {
        panic!("leaked {:?}", needles[hit.pattern().as_usize()]);
    }
    let parsed: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed["items"].as_array().unwrap().len(), N);
    // Keys and (decoded) lengths are kept.
    let first = &parsed["items"][0]["data"]["password"];
    let decoded = B64.decode(first.as_str().unwrap()).unwrap();
    let marker_len = mask::MARKER_PREFIX.len() + mask::FINGERPRINT_LEN;
    assert_eq!(decoded.len(), real_value(0).len().max(marker_len));
    let long = B64
        .decode(parsed["items"][0]["data"]["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        long.len(),
        marker_len,
        "short values show the marker length"
    );
    assert!(mask::contains_marker(&out));
}

/// Watch streams buffer one event at a time.
#[test]
fn watch_stream_buffers_one_event() {
    let m = masker();
    let mut body = Vec::new();
    for i in 0..2_000 {
        let mut obj = secret(i);
        obj["kind"] = json!("Secret");
        serde_json::to_writer(&mut body, &json!({"type": "ADDED", "object": obj})).unwrap();
        body.push(b'\n');
    }
    let mut stream = m
        .stream(
            BodyKind::JsonWatch,
            &MaskContext::for_resource("secrets", None),
        )
        .unwrap();
    let out = run(stream.as_mut(), &body, 4096);
    assert!(stream.peak_buffered() < 1024, "{}", stream.peak_buffered());
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2_000);
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        assert!(v["object"]["data"]["password"]
            .as_str()
            .unwrap()
            .starts_with(mask::MARKER_PREFIX_BASE64));
    }
}

/// A body mixing every shape gives identical output however it is split.
#[test]
fn every_split_point_gives_identical_output() {
    let body = serde_json::to_vec_pretty(&json!({
        "kind": "List", "apiVersion": "v1",
        "metadata": {"annotations": {"note": "token=abcdef123"}},
        "items": [
            {"kind": "Secret", "metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration":
                    "{\"kind\":\"Secret\",\"data\":{\"a\":\"aHVudGVyMg==\"}}"}},
             "data": {"a": "aHVudGVyMg==", "b": "\u{e9}t\u{e9}"}},
            {"kind": "ConfigMap", "data": {"x": "AKIAIOSFODNN7EXAMPLE", "esc": "a\"b\\c\u{1}"}},
            {"kind": "Pod", "spec": {"containers": [{"env": [{"name": "SECRET_KEY", "value": "v"}]}]}},
            "scalar", 12.5e3, true, null, [1, [2, {"kind": "Secret", "data": {"z": "eg=="}}]]
        ],
        "trailing": {"x": [1, 2]}
    }))
    .unwrap();
    let m = masker();
    let ctx = MaskContext::default();
    let whole = m.mask_body(BodyKind::Json, &ctx, &body).unwrap();
    assert!(!String::from_utf8_lossy(&whole).contains("aHVudGVyMg=="));
    serde_json::from_slice::<Value>(&whole).unwrap();
    for split in 0..=body.len() {
        let mut s = m.stream(BodyKind::Json, &ctx).unwrap();
        let mut out = Vec::new();
        s.push(&body[..split], &mut out).unwrap();
        s.push(&body[split..], &mut out).unwrap();
        s.finish(&mut out).unwrap();
        assert_eq!(fps(&out), fps(&whole), "split at {split}");
    }
    for chunk in [1, 2, 3, 7, 64] {
        let mut s = m.stream(BodyKind::Json, &ctx).unwrap();
        let out = run(s.as_mut(), &body, chunk);
        assert_eq!(fps(&out), fps(&whole), "chunks of {chunk}");
    }
}

/// Text split at every offset hides the same secrets.
#[test]
fn text_every_split_point_hides_secrets() {
    let text = b"log start\nuser=bob password=hunter22 ok\nkey AKIAIOSFODNN7EXAMPLE\nurl postgres://u:dbpass99@h/db\njwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end";
    let m = masker();
    let secrets: [&[u8]; 4] = [
        b"hunter22",
        b"AKIAIOSFODNN7EXAMPLE",
        b"dbpass99",
        b"eyJzdWIiOiIxMjM0NTY3ODkwIn0",
    ];
    for split in 0..=text.len() {
        for split2 in [split, (split + 5).min(text.len()), text.len()] {
            let mut s = m.stream(BodyKind::Text, &MaskContext::default()).unwrap();
            let mut out = Vec::new();
            s.push(&text[..split], &mut out).unwrap();
            s.flush(&mut out).unwrap();
            s.push(&text[split..split2], &mut out).unwrap();
            s.flush(&mut out).unwrap();
            s.push(&text[split2..], &mut out).unwrap();
            s.finish(&mut out).unwrap();
            for secret in secrets {
                assert!(
                    memchr::memmem::find(&out, secret).is_none(),
                    "split {split}/{split2} leaked {}: {}",
                    String::from_utf8_lossy(secret),
                    String::from_utf8_lossy(&out)
                );
            }
            assert!(out.ends_with(b" end"));
        }
    }
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[ -~\u{e9}\u{1F600}\n\t\"\\\\]{0,24}".prop_map(Value::String),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner.clone(), 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            (
                prop::collection::btree_map("[a-zA-Z_.]{1,8}", "[ -~]{0,16}", 0..4),
                inner.clone()
            )
                .prop_map(|(data, extra)| {
                    let data: serde_json::Map<String, Value> = data
                        .into_iter()
                        .map(|(k, v)| (k, json!(B64.encode(v))))
                        .collect();
                    json!({"kind": "Secret", "data": data, "extra": extra})
                }),
            (
                prop::collection::btree_map("[a-zA-Z_]{1,8}", "[ -~]{0,32}", 0..4),
                inner.clone()
            )
                .prop_map(|(data, extra)| json!({"kind": "ConfigMap", "data": data, "x": extra})),
            prop::collection::vec(inner, 0..4)
                .prop_map(|items| json!({"kind": "List", "items": items})),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Masking never breaks JSON, and streaming at any split gives the same bytes.
    #[test]
    fn masking_keeps_json_valid(value in arb_json(), split in 0usize..4096, pretty in any::<bool>()) {
        let body = if pretty {
            serde_json::to_vec_pretty(&value).unwrap()
        } else {
            serde_json::to_vec(&value).unwrap()
        };
        let m = masker();
        let ctx = MaskContext::default();
        let whole = m.mask_body(BodyKind::Json, &ctx, &body).unwrap();
        let parsed: Value = serde_json::from_slice(&whole).unwrap();
        // Shape is kept: same structure of objects and arrays.
        let original: Value = serde_json::from_slice(&body).unwrap();
        prop_assert_eq!(shape(&parsed), shape(&original));
        let split = split.min(body.len());
        let mut s = m.stream(BodyKind::Json, &ctx).unwrap();
        let mut out = Vec::new();
        s.push(&body[..split], &mut out).unwrap();
        s.push(&body[split..], &mut out).unwrap();
        s.finish(&mut out).unwrap();
        prop_assert_eq!(fps(&out), fps(&whole));
    }
}

/// `body` with every fingerprint replaced by `<fp>`: objects without a name (these bodies'
/// objects have none) get a key used nowhere else, so two maskings of one body differ only
/// there (docs/masking.md, "Markers").
fn fps(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let raw = regex::Regex::new(r"airlock:masked:((?:[a-z0-9-]+:)?)[0-9a-f]{12}").unwrap();
    let b64 = regex::Regex::new(r"YWlybG9jazptYXNrZWQ6[A-Za-z0-9+/]{16}").unwrap();
    let text = raw.replace_all(&text, "airlock:masked:${1}<fp>");
    b64.replace_all(&text, "YWlybG9jazptYXNrZWQ6<fp>")
        .into_owned()
}

/// Structure without leaf values.
fn shape(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::String(_) => json!("s"),
        other => other.clone(),
    }
}

/// `release` (the exec/attach idle flush) lets a held prompt out, masks a complete match it
/// holds, and keeps the stream usable: a PEM body that is still arriving stays dropped.
#[test]
fn text_release_emits_held_bytes_and_keeps_state() {
    let m = masker();
    let mut s = m.stream(BodyKind::Text, &MaskContext::default()).unwrap();
    let mut out = Vec::new();
    s.push(b"Password: ", &mut out).unwrap();
    s.flush(&mut out).unwrap();
    assert_eq!(out, b"", "a keyword tail is held until more arrives");
    s.release(&mut out).unwrap();
    assert_eq!(out, b"Password: ");
    out.clear();
    // A token file without a trailing newline: the match touches the end, so it is held...
    let jwt = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    s.push(jwt, &mut out).unwrap();
    // ...and released masked.
    s.release(&mut out).unwrap();
    assert!(
        mask::contains_marker(&out),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(memchr::memmem::find(&out, b"eyJzdWIi").is_none());
    out.clear();
    s.push(
        b"\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n",
        &mut out,
    )
    .unwrap();
    s.release(&mut out).unwrap();
    s.push(
        b"SECONDLINEOFKEYMATERIAL\n-----END PRIVATE KEY-----\nafter\n",
        &mut out,
    )
    .unwrap();
    s.finish(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(
        !text.contains("MIIEvQ") && !text.contains("SECONDLINE"),
        "{text}"
    );
    assert!(text.ends_with("after\n"), "{text}");
}
