//! Reloading the policy under load drops nothing: requests in flight and new ones keep being
//! answered, and an open watch keeps streaming across reloads (file changes and SIGHUP).

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{kubectl_bin, ok, raw_https, Demo};

#[test]
fn reload_under_load_drops_no_connections() {
    let demo = Demo::start();
    let policy = demo.dir.join("policy.yaml");
    let original = std::fs::read_to_string(&policy).unwrap();

    // A watch that must survive every reload.
    let mut watch = Command::new(kubectl_bin("1.33"))
        .args(["get", "configmaps", "-n", "shop", "-w", "-o", "name"])
        .env("KUBECONFIG", &demo.agent_kubeconfig)
        .env("HOME", &demo.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let out = watch.stdout.take().unwrap();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (good, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (server, ca, token) = (demo.server.clone(), demo.ca_pem(), demo.agent_token.clone());
        let (stop, good, bad) = (stop.clone(), good.clone(), bad.clone());
        load.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let req = format!("GET /api/v1/namespaces/shop/pods HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
                match std::panic::catch_unwind(|| raw_https(&server, &ca, req.as_bytes())) {
                    Ok(r) if r.status == 200 && r.complete => good.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    // Ten reloads: file edits (seen by the mtime watcher) and SIGHUPs, every 300 ms.
    let pid = demo.pid();
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&policy, format!("{original}\n# reload {i}\n")).unwrap();
        if i % 2 == 0 {
            let _ = Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let reloads: f64 = demo
        .metrics()
        .lines()
        .filter(|l| l.starts_with("airlock_policy_reloads_total{result=\"ok\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(reloads >= 5.0, "only {reloads} reloads happened");
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(good.load(Ordering::Relaxed) > 20);

    // The watch is still open and still streaming.
    ok(&demo.kubectl(
        "1.33",
        &["create", "configmap", "after-reloads", "-n", "shop"],
    ));
    let mut seen = false;
    for _ in 0..50 {
        if lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("after-reloads"))
        {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watch ended during the reloads"
    );
    let _ = watch.kill();
    assert!(
        seen,
        "the watch stopped streaming: {:?}",
        lines.lock().unwrap()
    );
}
