//! The in-memory object store: one map per resource, a global resourceVersion counter, a
//! bounded history of changes for watch replays, and a broadcast channel for live watches.
//!
//! Invariant: every write takes the one lock, bumps the counter, stamps the object with the
//! new resourceVersion, appends the event to the history and broadcasts it, in that order and
//! under the lock, so watchers that subscribe under the same lock see every change exactly once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::error::ApiError;

/// A live event subscription.
pub type Subscription = broadcast::Receiver<Arc<Event>>;

/// How many change events are kept for watch replays; older resourceVersions get 410 Gone.
pub const HISTORY: usize = 2000;

/// `(group, plural)`: the storage identity of a resource (all versions share it).
pub type ResourceKey = (String, String);

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

// === impl EventType ===

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion after the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// Which resource.
    pub key: ResourceKey,
    /// The object after the change (for deletes: as last stored, with the delete's rv).
    pub object: Value,
    /// For modifications: the object before, so watches with selectors can turn a change
    /// into ADDED (started matching) or DELETED (stopped matching) like upstream.
    pub previous: Option<Value>,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<ResourceKey, BTreeMap<(String, String), Value>>,
    history: VecDeque<Arc<Event>>,
    /// The rv before the oldest retained event: replays from below it are impossible.
    floor: u64,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
}

/// Why a watch cannot start at the requested resourceVersion.
#[derive(Debug, Clone, PartialEq)]
pub struct TooOld {
    /// The requested rv.
    pub requested: u64,
    /// The oldest rv we could replay from.
    pub oldest: u64,
}

/// Now, as upstream renders `metav1.Time`.
pub fn now_rfc3339() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

/// `now + secs`, rendered like `now_rfc3339`.
pub fn rfc3339_in(secs: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&fmt)
        .unwrap_or_default()
}

fn ns_name(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// The parts of an object whose change bumps `metadata.generation`.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// Whether the parts that bump `metadata.generation` differ.
/// Puts an object's members in the order kube-apiserver writes them (Go struct order):
/// `kind`, `apiVersion`, `metadata` (name, generateName, namespace, ..., managedFields), the
/// object's own fields, `status` last. Clients do not care; a streaming reader of the body
/// (Airlock's masker) meets the metadata first, as it would from a real cluster.
pub fn go_order(obj: &mut Value) {
    const META: &[&str] = &[
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    ];
    fn reorder(map: &mut serde_json::Map<String, Value>, first: &[&str], last: &[&str]) {
        let mut old = std::mem::take(map);
        for k in first {
            if let Some(v) = old.shift_remove(*k) {
                map.insert((*k).to_string(), v);
            }
        }
        let tail: Vec<(String, Value)> = last
            .iter()
            .filter_map(|k| old.shift_remove(*k).map(|v| ((*k).to_string(), v)))
            .collect();
        map.extend(old);
        map.extend(tail);
    }
    if let Some(map) = obj.as_object_mut() {
        reorder(map, &["kind", "apiVersion", "metadata"], &["status"]);
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            reorder(meta, META, &[]);
        }
    }
}

pub fn spec_changed(a: &Value, b: &Value) -> bool {
    spec_part(a) != spec_part(b)
}

// === impl Store ===

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        let (tx, _) = broadcast::channel(4096);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                ..Default::default()
            }),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every write is a single
        // insert), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current global resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    fn record(
        &self,
        inner: &mut Inner,
        kind: EventType,
        key: &ResourceKey,
        object: Value,
        previous: Option<Value>,
    ) {
        let ev = Arc::new(Event {
            rv: inner.rv,
            kind,
            key: key.clone(),
            object,
            previous,
        });
        inner.history.push_back(ev.clone());
        while inner.history.len() > HISTORY {
            if let Some(old) = inner.history.pop_front() {
                inner.floor = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
    }

    /// One object.
    pub fn get(&self, key: &ResourceKey, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Whether a namespace exists.
    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.get(&(String::new(), "namespaces".into()), "", ns)
            .is_some()
    }

    /// All objects of a resource (in one namespace or all), sorted by namespace and name, and
    /// the resourceVersion they are consistent with.
    pub fn list(&self, key: &ResourceKey, ns: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .get(key)
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv)
    }

    /// Stores a new object, assigning uid, creationTimestamp, resourceVersion and (for objects
    /// with a spec) generation. The namespace (if any) must exist.
    pub fn create(&self, key: &ResourceKey, mut obj: Value) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let (ns, name) = ns_name(&obj);
        if !ns.is_empty() {
            let exists = inner
                .objects
                .get(&(String::new(), "namespaces".to_string()))
                .is_some_and(|m| m.contains_key(&(String::new(), ns.clone())));
            if !exists {
                return Err(ApiError::not_found("", "namespaces", &ns));
            }
        }
        let map = inner.objects.entry(key.clone()).or_default();
        if map.contains_key(&(ns.clone(), name.clone())) {
            return Err(ApiError::already_exists(&key.0, &key.1, &name));
        }
        inner.rv += 1;
        let rv = inner.rv;
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        if meta.get("uid").and_then(Value::as_str).is_none() {
            meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        }
        if meta
            .get("creationTimestamp")
            .and_then(Value::as_str)
            .is_none()
        {
            meta["creationTimestamp"] = json!(now_rfc3339());
        }
        if obj.get("spec").is_some() && obj["metadata"].get("generation").is_none() {
            obj["metadata"]["generation"] = json!(1);
        }
        go_order(&mut obj);
        inner
            .objects
            .entry(key.clone())
            .or_default()
            .insert((ns, name), obj.clone());
        self.record(&mut inner, EventType::Added, key, obj.clone(), None);
        Ok(obj)
    }

    /// Atomically replaces an object with `f(current)`. `f` sees the stored object and returns
    /// the new one; a resourceVersion in the result that differs from the stored one is a
    /// conflict (optimistic concurrency), an absent one means "unconditional". Identity fields
    /// (uid, creationTimestamp) are kept and generation is bumped when the spec changed.
    pub fn modify<F>(
        &self,
        key: &ResourceKey,
        ns: &str,
        name: &str,
        f: F,
    ) -> Result<Value, ApiError>
    where
        F: FnOnce(&Value) -> Result<Value, ApiError>,
    {
        let mut inner = self.lock();
        let id = (ns.to_string(), name.to_string());
        let current = inner
            .objects
            .get(key)
            .and_then(|m| m.get(&id))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&key.0, &key.1, name))?;
        let mut next = f(&current)?;
        let cur_rv = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match next["metadata"]
            .get("resourceVersion")
            .and_then(Value::as_str)
        {
            Some(rv) if !rv.is_empty() && rv != cur_rv => {
                return Err(ApiError::conflict(&key.0, &key.1, name))
            }
            _ => {}
        }
        // Identity is the server's, whatever the client sent.
        next["metadata"]["name"] = json!(name);
        if !ns.is_empty() {
            next["metadata"]["namespace"] = json!(ns);
        }
        next["metadata"]["uid"] = current["metadata"]["uid"].clone();
        next["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"].clone();
        if let Some(g) = current["metadata"]
            .get("generation")
            .and_then(Value::as_i64)
        {
            let bumped = if spec_part(&current) != spec_part(&next) {
                g + 1
            } else {
                g
            };
            next["metadata"]["generation"] = json!(bumped);
        }
        // No-op writes do not bump the resourceVersion, as upstream.
        next["metadata"]["resourceVersion"] = json!(cur_rv);
        go_order(&mut next);
        if next == current {
            return Ok(current);
        }
        inner.rv += 1;
        let rv = inner.rv;
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        inner
            .objects
            .entry(key.clone())
            .or_default()
            .insert(id, next.clone());
        self.record(
            &mut inner,
            EventType::Modified,
            key,
            next.clone(),
            Some(current),
        );
        Ok(next)
    }

    /// Removes an object and, when `cascade`, everything it owns (by ownerReferences uid,
    /// transitively) and, for a namespace, everything in it. Returns the removed object.
    pub fn delete(
        &self,
        key: &ResourceKey,
        ns: &str,
        name: &str,
        cascade: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let obj = self.remove_locked(&mut inner, key, ns, name)?;
        if key.0.is_empty() && key.1 == "namespaces" {
            let keys: Vec<ResourceKey> = inner.objects.keys().cloned().collect();
            for k in keys {
                let victims: Vec<String> = inner
                    .objects
                    .get(&k)
                    .map(|m| {
                        m.keys()
                            .filter(|(n, _)| n == name)
                            .map(|(_, x)| x.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for v in victims {
                    let _ = self.remove_locked(&mut inner, &k, name, &v);
                }
            }
        } else if cascade {
            let mut owners = vec![obj["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string()];
            while let Some(uid) = owners.pop() {
                let mut victims = Vec::new();
                for (k, m) in &inner.objects {
                    for ((n, x), o) in m {
                        let owned =
                            o["metadata"]["ownerReferences"]
                                .as_array()
                                .is_some_and(|refs| {
                                    refs.iter().any(|r| r["uid"].as_str() == Some(uid.as_str()))
                                });
                        if owned {
                            victims.push((k.clone(), n.clone(), x.clone()));
                        }
                    }
                }
                for (k, n, x) in victims {
                    if let Ok(o) = self.remove_locked(&mut inner, &k, &n, &x) {
                        owners.push(
                            o["metadata"]["uid"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        );
                    }
                }
            }
        }
        Ok(obj)
    }

    fn remove_locked(
        &self,
        inner: &mut Inner,
        key: &ResourceKey,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut obj = inner
            .objects
            .get_mut(key)
            .and_then(|m| m.remove(&(ns.to_string(), name.to_string())))
            .ok_or_else(|| ApiError::not_found(&key.0, &key.1, name))?;
        inner.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        self.record(inner, EventType::Deleted, key, obj.clone(), None);
        Ok(obj)
    }

    /// Subscribes to live events and returns the retained events after `since` (exclusive).
    /// Both are taken under the lock so nothing falls between replay and live stream.
    pub fn watch_from(&self, since: u64) -> Result<(Vec<Arc<Event>>, Subscription), TooOld> {
        let inner = self.lock();
        if since < inner.floor {
            return Err(TooOld {
                requested: since,
                oldest: inner.floor + 1,
            });
        }
        let rx = self.tx.subscribe();
        let replay = inner
            .history
            .iter()
            .filter(|e| e.rv > since)
            .cloned()
            .collect();
        Ok((replay, rx))
    }

    /// Subscribes to live events and snapshots the current objects of `key` (for watches that
    /// start with synthetic ADDED events). Returns (objects, rv, receiver).
    pub fn watch_snapshot(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
    ) -> (Vec<Value>, u64, broadcast::Receiver<Arc<Event>>) {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let items = inner
            .objects
            .get(key)
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|w| w == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv, rx)
    }

    /// Every object, for the introspection dump.
    pub fn dump(&self) -> Value {
        let inner = self.lock();
        let mut out = serde_json::Map::new();
        for ((g, r), m) in &inner.objects {
            let k = if g.is_empty() {
                r.clone()
            } else {
                format!("{r}.{g}")
            };
            out.insert(k, Value::Array(m.values().cloned().collect()));
        }
        Value::Object(out)
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(r: &str) -> ResourceKey {
        (String::new(), r.to_string())
    }

    fn store_with_ns() -> Store {
        let s = Store::new();
        s.create(&key("namespaces"), json!({"metadata": {"name": "default"}}))
            .unwrap();
        s
    }

    #[test]
    fn create_get_conflict_and_delete() {
        let s = store_with_ns();
        let cm = json!({"metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v"}});
        let created = s.create(&key("configmaps"), cm.clone()).unwrap();
        assert!(created["metadata"]["uid"].is_string());
        assert_eq!(
            s.create(&key("configmaps"), cm.clone()).unwrap_err().reason,
            "AlreadyExists"
        );
        let missing_ns = json!({"metadata": {"name": "a", "namespace": "nope"}});
        assert_eq!(
            s.create(&key("configmaps"), missing_ns).unwrap_err().code,
            404
        );

        // Stale resourceVersion -> Conflict; current one -> ok; none -> unconditional.
        let stale =
            |_: &Value| Ok(json!({"metadata": {"resourceVersion": "1"}, "data": {"k": "x"}}));
        assert_eq!(
            s.modify(&key("configmaps"), "default", "a", stale)
                .unwrap_err()
                .reason,
            "Conflict"
        );
        let rv = created["metadata"]["resourceVersion"].clone();
        let fresh =
            move |_: &Value| Ok(json!({"metadata": {"resourceVersion": rv}, "data": {"k": "y"}}));
        let updated = s.modify(&key("configmaps"), "default", "a", fresh).unwrap();
        assert_eq!(updated["data"]["k"], "y");
        assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
        assert!(updated["metadata"].get("generation").is_none());

        s.delete(&key("configmaps"), "default", "a", true).unwrap();
        assert!(s.get(&key("configmaps"), "default", "a").is_none());
    }

    #[test]
    fn generation_bumps_only_on_spec_change() {
        let s = store_with_ns();
        let k = ("apps".to_string(), "deployments".to_string());
        s.create(
            &k,
            json!({"metadata": {"name": "d", "namespace": "default"}, "spec": {"replicas": 1}}),
        )
        .unwrap();
        let cases = [
            (json!({"replicas": 1}), json!({"a": "b"}), 1),
            (json!({"replicas": 2}), json!({"a": "b"}), 2),
            (json!({"replicas": 2}), json!({"a": "c"}), 2),
        ];
        for (spec, labels, gen) in cases {
            let out = s
                .modify(&k, "default", "d", |cur| {
                    let mut n = cur.clone();
                    n["spec"] = spec.clone();
                    n["metadata"]["labels"] = labels.clone();
                    Ok(n)
                })
                .unwrap();
            assert_eq!(out["metadata"]["generation"], gen);
        }
    }

    #[test]
    fn namespace_delete_and_cascade() {
        let s = store_with_ns();
        let rs = s
            .create(
                &("apps".into(), "replicasets".into()),
                json!({"metadata": {"name": "rs", "namespace": "default"}}),
            )
            .unwrap();
        let uid = rs["metadata"]["uid"].clone();
        s.create(&key("pods"), json!({"metadata": {"name": "p", "namespace": "default", "ownerReferences": [{"uid": uid}]}}))
            .unwrap();
        s.delete(
            &("apps".into(), "replicasets".into()),
            "default",
            "rs",
            true,
        )
        .unwrap();
        assert!(s.get(&key("pods"), "default", "p").is_none());
        s.create(
            &key("configmaps"),
            json!({"metadata": {"name": "c", "namespace": "default"}}),
        )
        .unwrap();
        s.delete(&key("namespaces"), "", "default", true).unwrap();
        assert!(s.get(&key("configmaps"), "default", "c").is_none());
    }

    #[test]
    fn watch_replay_and_too_old() {
        let s = store_with_ns();
        let start = s.current_rv();
        for i in 0..3 {
            s.create(
                &key("configmaps"),
                json!({"metadata": {"name": format!("c{i}"), "namespace": "default"}}),
            )
            .unwrap();
        }
        let (replay, _rx) = s.watch_from(start).unwrap();
        assert_eq!(replay.len(), 3);
        for i in 0..HISTORY + 5 {
            s.create(
                &key("configmaps"),
                json!({"metadata": {"name": format!("x{i}"), "namespace": "default"}}),
            )
            .unwrap();
        }
        assert!(s.watch_from(start).is_err());
    }
}
