//! The leak suite (first part of issue 5): real secret bytes, their base64 and their JSON
//! escapes appear nowhere in what kubectl prints through Airlock, while normal output still
//! works. exec and attach output is covered by `exec_recording.rs`.

mod common;

use base64::Engine;
use common::{ok, stderr, Demo};

/// Every secret value seeded in the simulated cluster, read directly (without Airlock).
fn real_secrets(demo: &Demo) -> Vec<String> {
    let mut out = vec![
        "S3cr3t-Pa55w0rd".to_owned(),
        "sk_live_51HxAirlockTestKey0000000000".to_owned(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
        "Pa55-w0rd-Payments".to_owned(),
    ];
    let json = ok(&demo.kubectl_direct(
        "1.33",
        &["get", "secret", "web-token", "-n", "shop", "-o", "json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let token = base64::engine::general_purpose::STANDARD
        .decode(v["data"]["token"].as_str().unwrap())
        .unwrap();
    out.push(String::from_utf8(token).unwrap());
    out
}

fn forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        secret.to_owned(),
        b64.encode(secret),
        serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        secret.replace('/', "\\/"),
    ]
}

#[track_caller]
fn assert_no_leak(what: &str, output: &str, secrets: &[String]) {
    for s in secrets {
        for f in forms(s) {
            assert!(!output.contains(&f), "{what}: leaked {f:?}\n{output}");
        }
    }
}

#[test]
fn kubectl_output_never_holds_a_secret() {
    let demo = Demo::start();
    let secrets = real_secrets(&demo);
    for v in ["1.27", "1.33"] {
        let cases: &[&[&str]] = &[
            &[
                "get",
                "secret",
                "db-credentials",
                "-n",
                "shop",
                "-o",
                "yaml",
            ],
            &[
                "get",
                "secret",
                "db-credentials",
                "-n",
                "shop",
                "-o",
                "json",
            ],
            &[
                "get",
                "secret",
                "db-credentials",
                "-n",
                "shop",
                "-o",
                "jsonpath={.data.password}",
            ],
            &[
                "get",
                "secret",
                "db-credentials",
                "-n",
                "shop",
                "-o",
                "go-template={{.data.password}}",
            ],
            &[
                "get",
                "secret",
                "db-credentials",
                "-n",
                "shop",
                "-o",
                "custom-columns=P:.data.password",
            ],
            &["get", "secret", "web-token", "-n", "shop", "-o", "yaml"],
            &["get", "secrets", "-A", "-o", "yaml"],
            &["get", "secrets", "-A"],
            &["describe", "secret", "db-credentials", "-n", "shop"],
            &["get", "configmap", "web-config", "-n", "shop", "-o", "yaml"],
            &["get", "pods", "-n", "shop", "-o", "yaml"],
            &["logs", "-n", "payments", "payments-worker-0"],
            &["get", "--raw", "/api/v1/namespaces/payments/secrets"],
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/payments/secrets/stripe-key",
            ],
        ];
        for args in cases {
            let out = ok(&demo.kubectl(v, args));
            assert_no_leak(&format!("{v} {args:?}"), &out, &secrets);
        }
        // Normal output still works: keys, byte counts and the marker.
        let d = ok(&demo.kubectl(v, &["describe", "secret", "db-credentials", "-n", "shop"]));
        assert!(d.contains("password:") && d.contains("bytes"), "{d}");
        let p = ok(&demo.kubectl(
            v,
            &[
                "get",
                "secret",
                "db-credentials",
                "-n",
                "shop",
                "-o",
                "jsonpath={.data.password}",
            ],
        ));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(p.trim())
            .unwrap();
        assert!(
            String::from_utf8_lossy(&decoded).starts_with("airlock:masked:"),
            "{p}"
        );
    }
}

#[test]
fn watch_streams_are_masked() {
    let demo = Demo::start();
    let secrets = real_secrets(&demo);
    let mut cmd = std::process::Command::new(common::kubectl_bin("1.33"));
    cmd.args(["get", "secrets", "-n", "shop", "-w", "-o", "json"])
        .env("KUBECONFIG", &demo.agent_kubeconfig)
        .env("HOME", &demo.dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let out = common::wait_with_timeout(child, std::time::Duration::from_secs(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db-credentials"), "{text}");
    assert_no_leak("get -w -o json", &text, &secrets);
}

#[test]
fn raw_responses_in_every_accept_are_masked_or_refused() {
    let demo = Demo::start();
    let secrets = real_secrets(&demo);
    for accept in [
        "application/json",
        "application/vnd.kubernetes.protobuf",
        "application/vnd.kubernetes.protobuf, application/json",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
        "application/yaml",
        "application/cbor",
        "*/*",
    ] {
        for path in [
            "/api/v1/namespaces/shop/secrets/db-credentials",
            "/api/v1/secrets",
        ] {
            let resp = demo.raw_get(
                path,
                &format!("Accept: {accept}\r\nAccept-Encoding: gzip\r\n"),
            );
            let body = String::from_utf8_lossy(&resp.body).into_owned();
            assert!(
                resp.status == 200 || resp.status == 406,
                "{accept} {path}: {}",
                resp.status
            );
            assert_no_leak(&format!("{accept} {path}"), &body, &secrets);
        }
    }
    // Tables with the object included.
    let resp = demo.raw_get(
        "/api/v1/namespaces/shop/secrets?includeObject=Object",
        "Accept: application/json;as=Table;v=v1;g=meta.k8s.io\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_no_leak(
        "table includeObject",
        &String::from_utf8_lossy(&resp.body),
        &secrets,
    );
}

#[test]
fn writing_a_mask_back_is_refused_and_the_secret_is_unchanged() {
    let demo = Demo::start();
    let yaml = ok(&demo.kubectl(
        "1.33",
        &[
            "get",
            "secret",
            "db-credentials",
            "-n",
            "shop",
            "-o",
            "yaml",
        ],
    ));
    let out = demo.kubectl_with(
        "1.33",
        &demo.agent_kubeconfig,
        &["apply", "-f", "-"],
        &[],
        Some(yaml.as_bytes()),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("masked by Airlock"),
        "{}",
        stderr(&out)
    );
    let cm = ok(&demo.kubectl(
        "1.33",
        &["get", "configmap", "web-config", "-n", "shop", "-o", "yaml"],
    ));
    let out = demo.kubectl_with(
        "1.33",
        &demo.agent_kubeconfig,
        &["replace", "-f", "-"],
        &[],
        Some(cm.as_bytes()),
    );
    assert!(
        stderr(&out).contains("masked by Airlock"),
        "{}",
        stderr(&out)
    );
    // The cluster still holds the real values.
    let direct = ok(&demo.kubectl_direct(
        "1.33",
        &[
            "get",
            "secret",
            "db-credentials",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.password}",
        ],
    ));
    let real = base64::engine::general_purpose::STANDARD
        .decode(direct.trim())
        .unwrap();
    assert_eq!(real, b"S3cr3t-Pa55w0rd");
    let url = ok(&demo.kubectl_direct(
        "1.33",
        &[
            "get",
            "cm",
            "web-config",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.DATABASE_URL}",
        ],
    ));
    assert!(url.contains("S3cr3t-Pa55w0rd"));

    // `kubectl replace --force` deletes before it creates: the create would be refused for its
    // markers after the delete, so the delete is refused while the object holds masked values.
    for v in ["1.27", "1.33"] {
        let out = demo.kubectl_with(
            v,
            &demo.agent_kubeconfig,
            &["replace", "--force", "-f", "-"],
            &[],
            Some(cm.as_bytes()),
        );
        assert!(
            !out.status.success() && stderr(&out).contains("starts `kubectl replace --force`"),
            "{v}: {}",
            stderr(&out)
        );
        let still = ok(&demo.kubectl_direct(
            "1.33",
            &[
                "get",
                "cm",
                "web-config",
                "-n",
                "shop",
                "-o",
                "jsonpath={.data.DATABASE_URL}",
            ],
        ));
        assert!(still.contains("S3cr3t-Pa55w0rd"), "{v}: {still}");
        // An object with nothing masked is replaced as usual.
        let name = format!("plain-{}", v.replace('.', "-"));
        ok(&demo.kubectl(
            v,
            &[
                "create",
                "configmap",
                &name,
                "-n",
                "shop",
                "--from-literal=a=b",
            ],
        ));
        let plain = ok(&demo.kubectl(v, &["get", "configmap", &name, "-n", "shop", "-o", "yaml"]));
        ok(&demo.kubectl_with(
            v,
            &demo.agent_kubeconfig,
            &["replace", "--force", "-f", "-"],
            &[],
            Some(plain.as_bytes()),
        ));
    }
}

/// `kubectl create token` (TokenRequest): the baseline policy denies it; where a policy allows
/// it, the token in the response is masked.
#[test]
fn create_token_is_denied_by_the_baseline_and_masked_where_allowed() {
    let demo = Demo::start();
    let denied = demo.kubectl("1.33", &["create", "token", "default", "-n", "shop"]);
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("deny-token-request"),
        "{}",
        stderr(&denied)
    );

    // An operator allows TokenRequest: Airlock reloads the policy, and still masks the token.
    std::fs::write(demo.dir.join("policy.yaml"), "default: allow\nrules: []\n").unwrap();
    let mut out = None;
    for _ in 0..50 {
        let o = demo.kubectl("1.33", &["create", "token", "default", "-n", "shop"]);
        if o.status.success() {
            out = Some(o);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let printed = ok(&out.expect("TokenRequest still refused after the policy change"));
    assert!(printed.contains("airlock:masked:"), "{printed}");
    assert!(!printed.contains("eyJ"), "a JWT leaked: {printed}");
    // The cluster did issue a real token (kubectl direct shows one).
    let direct = ok(&demo.kubectl_direct("1.33", &["create", "token", "default", "-n", "shop"]));
    assert!(direct.starts_with("eyJ"), "{direct}");
}

/// The fingerprint in a masked Secret `data` value (base64 of `airlock:masked:<fp>***`).
fn data_fp(b64_value: &str) -> String {
    let text = base64::engine::general_purpose::STANDARD
        .decode(b64_value.trim())
        .unwrap();
    let text = String::from_utf8_lossy(&text).into_owned();
    let fp = text
        .strip_prefix("airlock:masked:")
        .unwrap_or_else(|| panic!("not a marker: {text}"));
    fp[..12].to_owned()
}

/// The fingerprint in the first `[airlock:masked:<detector>:<fp>]` of `text`.
fn text_fp(text: &str) -> String {
    let at = text
        .find("[airlock:masked:")
        .unwrap_or_else(|| panic!("no marker in {text}"));
    let marker = &text[at + 1..];
    let end = marker.find(']').unwrap();
    marker[..end].rsplit(':').next().unwrap().to_owned()
}

/// A fingerprint cannot confirm a guess: an agent that has the gateway fingerprint the right
/// password elsewhere (a ConfigMap of its own, created for real or as a dry run, a Secret of
/// its own) gets fingerprints unrelated to the real Secret's, while the Secret's own field
/// shows the same fingerprint on every read (get, list), so a rotation still shows.
#[test]
fn fingerprints_cannot_confirm_a_guess() {
    let demo = Demo::start();
    let read = |args: &[&str]| ok(&demo.kubectl("1.33", args));
    let password = [
        "get",
        "secret",
        "db-credentials",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.password}",
    ];
    let secret = data_fp(&read(&password));
    assert_eq!(
        data_fp(&read(&password)),
        secret,
        "the same field, read twice"
    );
    let listed = read(&[
        "get",
        "secrets",
        "-n",
        "shop",
        "-o",
        "jsonpath={.items[?(@.metadata.name==\"db-credentials\")].data.password}",
    ]);
    assert_eq!(data_fp(&listed), secret, "the same field, listed");

    // The right guess, placed where the agent can: every fingerprint differs. A Secret's
    // `data` value is fingerprinted over its base64 text and a whole value under a sensitive
    // name over its text, so the guess is written in base64 (before fingerprints were bound,
    // this showed the Secret's fingerprint).
    let guess = format!(
        "db_password={}",
        base64::engine::general_purpose::STANDARD.encode("S3cr3t-Pa55w0rd")
    );
    let dry = read(&[
        "create",
        "configmap",
        "guess",
        "-n",
        "shop",
        &format!("--from-literal={guess}"),
        "--dry-run=server",
        "-o",
        "jsonpath={.data.db_password}",
    ]);
    assert!(dry.contains("[airlock:masked:sensitive-name:"), "{dry}");
    assert_ne!(text_fp(&dry), secret, "dry-run ConfigMap");
    let created = read(&[
        "create",
        "configmap",
        "guess",
        "-n",
        "shop",
        &format!("--from-literal={guess}"),
    ]);
    assert!(created.contains("created"), "{created}");
    let guess_value = [
        "get",
        "configmap",
        "guess",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.db_password}",
    ];
    let stored = read(&guess_value);
    assert_ne!(text_fp(&stored), secret, "stored ConfigMap");
    assert_ne!(
        text_fp(&stored),
        text_fp(&dry),
        "a read is not linked to a write's echo"
    );
    // Reading it twice shows the same fingerprint (bound to the ConfigMap's field).
    let stored_again = read(&guess_value);
    assert_eq!(text_fp(&stored_again), text_fp(&stored));

    // Overwriting a value and writing candidates into its place, one after another: every
    // write is a new version of the object, so a candidate is never compared with the
    // fingerprint read before (here the last candidate is the real value).
    let url_of = |via_airlock: bool| {
        let args = [
            "get",
            "configmap",
            "web-config",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.DATABASE_URL}",
        ];
        if via_airlock {
            read(&args)
        } else {
            ok(&demo.kubectl_direct("1.33", &args))
        }
    };
    let real = url_of(false);
    assert!(real.contains("S3cr3t-Pa55w0rd"), "{real}");
    let before = text_fp(&url_of(true));
    for candidate in [
        real.replace("S3cr3t-Pa55w0rd", "wrong-guess-1"),
        real.clone(),
    ] {
        let patch = serde_json::json!({"data": {"DATABASE_URL": candidate}}).to_string();
        let out = read(&[
            "patch",
            "configmap",
            "web-config",
            "-n",
            "shop",
            "-p",
            &patch,
        ]);
        assert!(out.contains("patched"), "{out}");
    }
    assert_eq!(url_of(false), real);
    assert_ne!(
        text_fp(&url_of(true)),
        before,
        "the same value, a new version"
    );
}
