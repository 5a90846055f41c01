#!/usr/bin/env python3
"""The Python `kubernetes` client through Airlock: list, watch and exec.

Run by crates/airlock/tests/clients_python.rs against a running `airlock demo`:

    python3 tests/python/test_clients.py --kubeconfig DIR/agent.kubeconfig

A plain script (no pytest): each check raises on failure, the exit status is non-zero, and a
summary line per check is printed either way.
"""

import argparse
import sys
import threading
import time
import traceback
import uuid

from kubernetes import client, config, watch
from kubernetes.stream import stream

NAMESPACE = "shop"
WEB_PODS = ("web-6b7f9c5d4-x2k9p", "web-6b7f9c5d4-q8m3z")


def check_list(core):
    pods = core.list_namespaced_pod(NAMESPACE, _request_timeout=10)
    names = {p.metadata.name for p in pods.items}
    for web in WEB_PODS:
        if web not in names:
            raise AssertionError(f"{web} missing from the pod list: {sorted(names)}")
    return f"{len(names)} pods, both web pods present"


def check_watch(core):
    # Unique, so the script can run more than once against the same cluster.
    name = f"watched-python-{uuid.uuid4().hex[:8]}"
    # Watching from the list's resourceVersion means the create below is seen even if it lands
    # before the watch request reaches the cluster.
    rv = core.list_namespaced_config_map(NAMESPACE, _request_timeout=10).metadata.resource_version
    created = {}

    def create():
        # Give the watch a moment to be established, so the event arrives over the open stream.
        time.sleep(0.5)
        try:
            body = client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=name), data={"from": "python"}
            )
            core.create_namespaced_config_map(NAMESPACE, body, _request_timeout=10)
            created["ok"] = True
        except Exception as e:  # reported by the main thread
            created["error"] = e

    creator = threading.Thread(target=create, daemon=True)
    creator.start()
    w = watch.Watch()
    seen = None
    started = time.monotonic()
    try:
        for event in w.stream(
            core.list_namespaced_config_map,
            NAMESPACE,
            resource_version=rv,
            timeout_seconds=10,
            _request_timeout=15,
        ):
            obj = event["object"]
            if event["type"] == "ADDED" and obj.metadata.name == name:
                seen = obj
                w.stop()
                break
    except KeyError as e:
        # The client sends `watch=True`; a server that only honours `watch=true` answers with a
        # plain list, which the watch decoder reads as one event without an object.
        raise AssertionError(
            f"the watch response was not a stream of watch events (missing {e}): "
            "was `watch=True` answered as a list?"
        ) from e
    creator.join(timeout=10)
    if "error" in created:
        raise AssertionError(f"creating {name} failed: {created['error']}")
    if seen is None:
        raise AssertionError(f"the watch ended without an ADDED event for {name}")
    if (seen.data or {}).get("from") != "python":
        raise AssertionError(f"unexpected data in the ADDED event: {seen.data}")
    return f"ADDED {name} after {time.monotonic() - started:.2f}s"


def exec_in_web_pod(core, command):
    started = time.monotonic()
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        WEB_PODS[0],
        NAMESPACE,
        container="app",
        command=command,
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=20)
    if resp.is_open():
        resp.close()
        raise AssertionError(f"exec {command} did not finish within 20s")
    stdout = resp.read_stdout()
    stderr = resp.read_stderr()
    return stdout, stderr, resp.returncode, time.monotonic() - started


def check_exec(core):
    out, err, code, t1 = exec_in_web_pod(core, ["echo", "hello"])
    if out != "hello\n" or code != 0:
        raise AssertionError(f"echo hello: stdout={out!r} stderr={err!r} returncode={code!r}")
    out, err, code, t2 = exec_in_web_pod(core, ["sh", "-c", "exit 3"])
    if code != 3:
        raise AssertionError(f"sh -c 'exit 3': stdout={out!r} stderr={err!r} returncode={code!r}")
    # The durations are printed, not asserted: this client only notices frames that arrive in
    # their own TLS record (it polls the socket, not the SSL buffer; kubernetes-client/python
    # #2414), so frames that share a record wait for the next bytes on the wire.
    return f"echo hello -> 'hello\\n' rc=0 in {t1:.2f}s; sh -c 'exit 3' -> rc=3 in {t2:.2f}s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()

    config.load_kube_config(config_file=args.kubeconfig)
    core = client.CoreV1Api()

    failed = 0
    for check in (check_list, check_watch, check_exec):
        try:
            detail = check(core)
            print(f"ok   {check.__name__}: {detail}")
        except Exception:
            failed += 1
            print(f"FAIL {check.__name__}:")
            traceback.print_exc(file=sys.stdout)
    print(f"{3 - failed} passed, {failed} failed")
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
