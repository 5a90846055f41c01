//! exec/attach output is masked through Airlock (tunnel.rs), over WebSocket and SPDY, while
//! stdin, exit codes and `kubectl cp` (tar over exec) keep working byte for byte.

mod common;

use common::{ok, stderr, Demo};

const WEB_POD: &str = "web-6b7f9c5d4-x2k9p";
const SA_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// (kubectl version, environment): WebSocket (1.33), SPDY (1.27 and 1.33 forced).
const CLIENTS: &[(&str, &[(&str, &str)])] = &[
    ("1.27", &[]),
    ("1.33", &[]),
    ("1.33", &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")]),
];

fn exec(
    demo: &Demo,
    v: &str,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> std::process::Output {
    let mut full = vec!["exec"];
    if stdin.is_some() {
        full.push("-i");
    }
    full.extend(["-n", "shop", WEB_POD, "-c", "app", "--"]);
    full.extend(args);
    demo.kubectl_with(v, &demo.agent_kubeconfig, &full, env, stdin)
}

/// Deterministic bytes of every value (not text), for byte-exact round trips.
fn binary(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn exec_output_is_masked_and_stdin_and_exit_codes_still_work() {
    let demo = Demo::start();
    // The credential is real: straight to the cluster, `cat` shows it.
    let raw = ok(&demo.kubectl_direct(
        "1.33",
        &[
            "exec", "-n", "shop", WEB_POD, "-c", "app", "--", "cat", SA_TOKEN,
        ],
    ));
    assert!(raw.starts_with("eyJ"), "{raw}");
    let payload = binary(256 * 1024);
    for (v, env) in CLIENTS {
        let out = ok(&exec(&demo, v, env, &["cat", SA_TOKEN], None));
        assert!(out.contains("airlock:masked:"), "{v} {env:?}: {out}");
        assert!(
            !out.contains(&raw),
            "{v} {env:?}: raw token through airlock"
        );
        assert!(!out.contains("eyJhbGciOiJSUzI1NiIs"), "{v} {env:?}: {out}");

        let out = ok(&exec(&demo, v, env, &["printenv", "DATABASE_URL"], None));
        assert!(out.contains("airlock:masked:"), "{v} {env:?}: {out}");
        assert!(!out.contains("S3cr3t-Pa55w0rd"), "{v} {env:?}: {out}");

        // stdin is not rewritten, and output without credentials is not either.
        let out = exec(&demo, v, env, &["cat"], Some(&payload));
        assert!(out.status.success(), "{v} {env:?}: {}", stderr(&out));
        assert!(
            out.stdout == payload,
            "{v} {env:?}: binary stdin did not round-trip ({} bytes back)",
            out.stdout.len()
        );

        let out = exec(&demo, v, env, &["sh", "-c", "echo before; exit 3"], None);
        assert_eq!(out.status.code(), Some(3), "{v} {env:?}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
    }
    common::wait_for_metric(&demo, "airlock_open_tunnels", 0);
}

/// `kubectl cp` is `tar` over exec. The masker only rewrites detector hits, so an ordinary
/// file (text or binary) is copied unchanged both ways; a file holding a credential is copied
/// whole, with the credential replaced by a marker of the same length (a longer marker would
/// shift the archive against its headers: the file came back cut short, or the next header
/// was garbage and the copy failed).
#[test]
fn kubectl_cp_still_works_and_never_copies_a_credential_out() {
    let demo = Demo::start();
    let text = b"copied through airlock\nline two\n".repeat(100);
    let bin = binary(300 * 1024);
    let secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let with_secret = format!(
        "before\nAWS_SECRET_ACCESS_KEY={secret_key}\npassword=hunter2hunter2\nafter the secrets\n{}",
        "tail line\n".repeat(200)
    );
    for v in ["1.27", "1.33"] {
        for (name, content) in [("text", &text), ("bin", &bin)] {
            let local = demo.dir.join(format!("cp-{v}-{name}"));
            std::fs::write(&local, content).unwrap();
            let dest = format!("shop/{WEB_POD}:/tmp/cp-{v}-{name}");
            ok(&demo.kubectl(v, &["cp", "-c", "app", local.to_str().unwrap(), &dest]));
            let back = demo.dir.join(format!("cp-{v}-{name}-back"));
            ok(&demo.kubectl(v, &["cp", "-c", "app", &dest, back.to_str().unwrap()]));
            assert!(
                std::fs::read(&back).unwrap() == *content,
                "{v} {name}: cp changed the file"
            );
        }
        // A directory with a credential-bearing file and a plain one, there and back.
        let dir = demo.dir.join(format!("cpdir-{v}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.env"), &with_secret).unwrap();
        std::fs::write(dir.join("b.txt"), &text).unwrap();
        let dest = format!("shop/{WEB_POD}:/tmp/cpdir-{v}");
        ok(&demo.kubectl(v, &["cp", "-c", "app", dir.to_str().unwrap(), &dest]));
        for (what, src) in [
            ("file", format!("{dest}/a.env")),
            ("directory", dest.clone()),
        ] {
            let back = demo.dir.join(format!("cpdir-{v}-{what}-back"));
            let out = demo.kubectl(v, &["cp", "-c", "app", &src, back.to_str().unwrap()]);
            assert!(out.status.success(), "{v} {what}: {}", stderr(&out));
            let a = if what == "file" {
                back.clone()
            } else {
                back.join("a.env")
            };
            let copied = std::fs::read_to_string(&a).unwrap();
            assert_eq!(copied.len(), with_secret.len(), "{v} {what}: {copied}");
            assert!(
                !copied.contains(secret_key) && !copied.contains("hunter2"),
                "{v} {what}: a credential was copied out raw: {copied}"
            );
            assert!(
                copied.contains("AWS_SECRET_ACCESS_KEY=[airlock:masked:")
                    && copied.contains("after the secrets\n")
                    && copied.ends_with("tail line\n"),
                "{v} {what}: {copied}"
            );
            if what == "directory" {
                assert!(
                    std::fs::read(back.join("b.txt")).unwrap() == text,
                    "{v}: the plain file beside it changed"
                );
            }
        }
        let back = demo.dir.join(format!("token-{v}"));
        let src = format!("shop/{WEB_POD}:{SA_TOKEN}");
        let out = demo.kubectl(v, &["cp", "-c", "app", &src, back.to_str().unwrap()]);
        let copied = std::fs::read_to_string(&back).unwrap_or_default();
        assert!(
            !copied.contains("eyJhbGciOiJSUzI1NiIs"),
            "{v}: the token was copied out raw"
        );
        assert!(
            out.status.success() && copied.contains("airlock:masked:"),
            "{v}: cp of the token: {}: {copied:?}",
            stderr(&out)
        );
    }
}
