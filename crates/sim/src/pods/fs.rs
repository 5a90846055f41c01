//! A tiny in-memory filesystem per pod, shared by every exec into that pod so `kubectl cp`
//! to the pod and back sees the same files.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// Total file bytes one pod may hold; writes beyond fail with "No space left on device".
const MAX_POD_BYTES: usize = 64 * 1024 * 1024;
/// Pods whose filesystems are remembered; the oldest is forgotten beyond this.
const MAX_PODS: usize = 256;

/// A node in the tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Dir,
    File(Vec<u8>),
}

/// A pod's filesystem: absolute normalised paths to nodes. `/` always exists.
#[derive(Debug, Default)]
pub(crate) struct Fs {
    nodes: BTreeMap<String, Node>,
    bytes: usize,
}

/// Why an operation failed; rendered like coreutils messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsError {
    NotFound,
    IsDir,
    NotDir,
    NoSpace,
}

impl FsError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            FsError::NotFound => "No such file or directory",
            FsError::IsDir => "Is a directory",
            FsError::NotDir => "Not a directory",
            FsError::NoSpace => "No space left on device",
        }
    }
}

/// Joins `path` onto `cwd` and resolves `.` and `..`.
pub(crate) fn normalize(cwd: &str, path: &str) -> String {
    let full = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{cwd}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in full.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

impl Fs {
    /// The seeded filesystem for a pod.
    pub(crate) fn seeded(namespace: &str, pod: &str, hostname: &str) -> Self {
        let mut fs = Fs::default();
        fs.nodes.insert("/".to_owned(), Node::Dir);
        for d in ["/bin", "/etc", "/tmp", "/app", "/root", "/var/log"] {
            let _ = fs.mkdir_p(d);
        }
        let token = crate::pods::service_account_token(namespace, pod);
        let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
        let files: Vec<(String, Vec<u8>)> = vec![
            ("/etc/hostname".into(), format!("{hostname}\n").into_bytes()),
            (
                "/etc/os-release".into(),
                b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.0\n".to_vec(),
            ),
            (
                "/etc/passwd".into(),
                b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
                    .to_vec(),
            ),
            (
                "/etc/resolv.conf".into(),
                format!("search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n").into_bytes(),
            ),
            (format!("{sa}/token"), token.into_bytes()),
            (format!("{sa}/namespace"), namespace.as_bytes().to_vec()),
            (format!("{sa}/ca.crt"), SIM_CA.as_bytes().to_vec()),
            (
                "/app/config.yaml".into(),
                format!("server:\n  port: 8080\n  name: {pod}\nlogging:\n  level: info\nfeatures:\n  checkout: true\n").into_bytes(),
            ),
        ];
        for (path, data) in files {
            let _ = fs.mkdir_p(parent(&path));
            let _ = fs.write(&path, data, false);
        }
        fs
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub(crate) fn read(&self, path: &str) -> Result<&[u8], FsError> {
        match self.nodes.get(path) {
            Some(Node::File(d)) => Ok(d),
            Some(Node::Dir) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        }
    }

    pub(crate) fn is_dir(&self, path: &str) -> bool {
        matches!(self.nodes.get(path), Some(Node::Dir))
    }

    /// Writes (or appends to) a file; the parent directory must exist.
    pub(crate) fn write(&mut self, path: &str, data: Vec<u8>, append: bool) -> Result<(), FsError> {
        match self.nodes.get(parent(path)) {
            Some(Node::Dir) => {}
            Some(Node::File(_)) => return Err(FsError::NotDir),
            None => return Err(FsError::NotFound),
        }
        let old = match self.nodes.get(path) {
            Some(Node::Dir) => return Err(FsError::IsDir),
            Some(Node::File(d)) => d.len(),
            None => 0,
        };
        let new_len = if append { old + data.len() } else { data.len() };
        let total = self.bytes - old + new_len;
        if total > MAX_POD_BYTES {
            return Err(FsError::NoSpace);
        }
        self.bytes = total;
        match (append, self.nodes.get_mut(path)) {
            (true, Some(Node::File(d))) => d.extend_from_slice(&data),
            _ => {
                self.nodes.insert(path.to_owned(), Node::File(data));
            }
        }
        Ok(())
    }

    pub(crate) fn mkdir_p(&mut self, path: &str) -> Result<(), FsError> {
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            match self.nodes.get(&cur) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) => return Err(FsError::NotDir),
                None => {
                    self.nodes.insert(cur.clone(), Node::Dir);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn remove(&mut self, path: &str, recursive: bool) -> Result<(), FsError> {
        match self.nodes.get(path) {
            None => Err(FsError::NotFound),
            Some(Node::Dir) if !recursive => Err(FsError::IsDir),
            _ => {
                let prefix = format!("{path}/");
                let doomed: Vec<String> = self
                    .nodes
                    .keys()
                    .filter(|k| *k == path || k.starts_with(&prefix))
                    .cloned()
                    .collect();
                for k in doomed {
                    if let Some(Node::File(d)) = self.nodes.remove(&k) {
                        self.bytes -= d.len();
                    }
                }
                Ok(())
            }
        }
    }

    /// Direct children of a directory, names only, sorted.
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<String>, FsError> {
        match self.nodes.get(dir) {
            None => return Err(FsError::NotFound),
            Some(Node::File(_)) => return Err(FsError::NotDir),
            Some(Node::Dir) => {}
        }
        let prefix = if dir == "/" {
            "/".to_owned()
        } else {
            format!("{dir}/")
        };
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned())
            })
            .collect())
    }

    /// Every path at or below `path`, in sorted (parent-first) order.
    pub(crate) fn walk(&self, path: &str) -> Vec<(String, Node)> {
        let prefix = if path == "/" {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        self.nodes
            .iter()
            .filter(|(k, _)| *k == path || k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A self-signed-looking CA bundle; never used for TLS, only shown to `cat`.
const SIM_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBdjCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwprdWJlcm5l
dGVzMB4XDTI2MDEwMTAwMDAwMFoXDTM2MDEwMTAwMDAwMFowFTETMBEGA1UEAxMK
a3ViZXJuZXRlczBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABFNpbXVsYXRlZCBj
bHVzdGVyIENBIC0gbm90IGEgcmVhbCBrZXkgLSBhaXJsb2NrIHNpbXVsYXRvcqNC
MEAwDgYDVR0PAQH/BAQDAgKkMA8GA1UdEwEB/wQFMAMBAf8wHQYDVR0OBBYEFFNp
bS1haXJsb2NrLWNhLTAwMDAwMDAwCgYIKoZIzj0EAwIDRwAwRAIgU2ltdWxhdGVk
IGNhIHNpZ25hdHVyZSAxMjM0NTY3ODkwAiBTaW11bGF0ZWQgY2Egc2lnbmF0dXJl
-----END CERTIFICATE-----
";

type Registry = Mutex<(
    HashMap<(String, String), Arc<Mutex<Fs>>>,
    Vec<(String, String)>,
)>;

/// The filesystem of `namespace/pod`, created on first use.
pub(crate) fn for_pod(namespace: &str, pod: &str, hostname: &str) -> Arc<Mutex<Fs>> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let reg = REGISTRY.get_or_init(Default::default);
    let mut guard = match reg.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let (map, order) = &mut *guard;
    let key = (namespace.to_owned(), pod.to_owned());
    if let Some(fs) = map.get(&key) {
        return fs.clone();
    }
    if order.len() >= MAX_PODS {
        let oldest = order.remove(0);
        map.remove(&oldest);
    }
    let fs = Arc::new(Mutex::new(Fs::seeded(namespace, pod, hostname)));
    map.insert(key.clone(), fs.clone());
    order.push(key);
    fs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_relative_paths() {
        for (cwd, p, want) in [
            ("/", "tmp", "/tmp"),
            ("/tmp", "../etc/./hostname", "/etc/hostname"),
            ("/a", "/b/", "/b"),
            ("/", "..", "/"),
        ] {
            assert_eq!(normalize(cwd, p), want);
        }
    }

    #[test]
    fn write_list_remove() {
        let mut fs = Fs::seeded("shop", "web", "web");
        fs.write("/tmp/a", b"x".to_vec(), false).unwrap();
        fs.write("/tmp/a", b"y".to_vec(), true).unwrap();
        assert_eq!(fs.read("/tmp/a").unwrap(), b"xy");
        assert_eq!(fs.list("/tmp").unwrap(), vec!["a"]);
        assert_eq!(fs.write("/nope/a", vec![], false), Err(FsError::NotFound));
        fs.remove("/tmp", true).unwrap();
        assert!(fs.get("/tmp/a").is_none());
    }
}
