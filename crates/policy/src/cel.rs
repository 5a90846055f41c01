//! CEL: compiling conditions at load, and evaluating them against one
//! request.
//!
//! Conditions are compiled once, when the policy is loaded. A condition's
//! variables (`request`, `identity`, `object`) are built at most once per
//! request, and only when a rule with a condition has matched on everything
//! else, so requests that no conditional rule applies to never pay for CEL.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program, Value};
use serde_json::Value as Json;

use crate::k8s::{self, Node};
use crate::RequestContext;

/// The functions and macros of CEL's standard environment (as `cel` 0.15's
/// `Env::stdlib` declares them without the `chrono` feature, which Airlock
/// leaves off: no `duration`/`timestamp`). A call to anything else, outside these and
/// the helpers (`HELPER_FNS`), is refused at load: cel-rust has no type checker, so an
/// unknown function would otherwise only show up as an error at request
/// time.
const STANDARD: &[&str] = &[
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "optional.of",
    "of",
    "none",
    "ofNonZeroValue",
    "optional.none",
    "optional.ofNonZeroValue",
    "hasValue",
    "value",
    "or",
    "orValue",
];

/// The shared environment: the standard library and macros.
pub(crate) fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

/// Compiles a condition, refusing calls to functions that do not exist.
pub(crate) fn compile(source: &str) -> Result<Program, String> {
    let program = env().compile(source).map_err(|e| {
        e.to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let references = program.references();
    for function in references.functions() {
        let identifier = function
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && function
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if identifier
            && !STANDARD.contains(&function)
            && !HELPER_FNS.iter().any(|(name, _)| *name == function)
        {
            return Err(format!("unknown function '{function}'"));
        }
    }
    Ok(program)
}

/// Which variables a policy's conditions refer to; the others are not built.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Vars {
    pub request: bool,
    pub identity: bool,
}

impl Vars {
    /// The variables `program` refers to, added to these.
    pub(crate) fn with(self, program: &Program) -> Self {
        let refs = program.references();
        Self {
            request: self.request || refs.has_variable("request"),
            identity: self.identity || refs.has_variable("identity"),
        }
    }
}

/// The outcome of one condition.
pub(crate) enum Outcome {
    True,
    False,
    /// The condition failed to evaluate or did not return a boolean; the
    /// string says why, without any value from the request (it goes to the
    /// audit log).
    Error(String),
}

/// A condition context, built on first use for one request.
pub(crate) struct Scope {
    context: Context<'static, 'static>,
}

impl Scope {
    /// Builds the variables the policy's conditions refer to.
    pub(crate) fn new(ctx: &RequestContext<'_>, vars: Vars) -> Self {
        let mut context = Context::with_env(env());
        if vars.request {
            context.add_variable_from_value("request", request_value(ctx));
        }
        if vars.identity {
            context.add_variable_from_value("identity", identity_value(ctx));
        }
        let object = Arc::new(match ctx.object {
            None => Json::Null,
            Some(body) => k8s::normalize_body(body).unwrap_or_else(|| body.clone()),
        });
        context.add_variable_as_val("object", json_to_val(&object));
        register_helpers(&mut context, &object);
        Self { context }
    }

    pub(crate) fn eval(&self, program: &Program) -> Outcome {
        match program.execute(&self.context) {
            Ok(Value::Bool(true)) => Outcome::True,
            Ok(Value::Bool(false)) => Outcome::False,
            Ok(other) => {
                Outcome::Error(format!("condition returned {}, not bool", other.type_of()))
            }
            Err(e) => Outcome::Error(describe(&e)),
        }
    }
}

/// The helper functions, each registered per scope so it can reach the
/// request's object as parsed JSON: when the argument *is* the `object`
/// variable (the usual `any_privileged(object)`), the helper reads the JSON
/// directly instead of converting the CEL value back, which would copy the
/// whole object on every call.
#[derive(Clone, Copy)]
enum Helper {
    PodSpecs,
    Containers,
    AnyPrivileged,
    UsesHostNamespaces,
    UsesHostPath,
    UsesHost,
    AddedCapabilities,
    RbacVerbs,
    Lookup,
}

const HELPER_FNS: &[(&str, Helper)] = &[
    ("pod_specs", Helper::PodSpecs),
    ("containers", Helper::Containers),
    ("any_privileged", Helper::AnyPrivileged),
    ("uses_host_namespaces", Helper::UsesHostNamespaces),
    ("uses_host_path", Helper::UsesHostPath),
    ("uses_host", Helper::UsesHost),
    ("added_capabilities", Helper::AddedCapabilities),
    ("rbac_verbs", Helper::RbacVerbs),
    ("lookup", Helper::Lookup),
];

fn run<N: Node>(helper: Helper, node: &N, path: &str) -> Value {
    match helper {
        Helper::PodSpecs => list(k8s::pod_specs(node).into_iter().map(N::to_cel).collect()),
        Helper::Containers => list(k8s::containers(node).into_iter().map(N::to_cel).collect()),
        Helper::AnyPrivileged => Value::Bool(k8s::any_privileged(node)),
        Helper::UsesHostNamespaces => Value::Bool(k8s::uses_host_namespaces(node)),
        Helper::UsesHostPath => Value::Bool(k8s::uses_host_path(node)),
        Helper::UsesHost => {
            Value::Bool(k8s::uses_host_namespaces(node) || k8s::uses_host_path(node))
        }
        Helper::AddedCapabilities => strings(k8s::added_capabilities(node)),
        Helper::RbacVerbs => strings(k8s::rbac_verbs(node)),
        Helper::Lookup => k8s::lookup(node, path)
            .map(N::to_cel)
            .unwrap_or(Value::Null),
    }
}

/// `cel`'s boxed function type (not exported under a name of its own).
type HelperFn = Box<
    dyn for<'c, 'k> Fn(
            &mut cel::FunctionContext<'c, 'k>,
        ) -> Result<cel::common::value::CowVal<'c, 'k>, ExecutionError>
        + Send
        + Sync,
>;

fn register_helpers(context: &mut Context<'static, 'static>, object: &Arc<Json>) {
    for (name, helper) in HELPER_FNS {
        let (name, helper, object) = (*name, *helper, object.clone());
        let arity = if matches!(helper, Helper::Lookup) {
            2
        } else {
            1
        };
        let function: HelperFn = Box::new(move |ftx: &mut cel::FunctionContext| {
            if ftx.args.len() != arity {
                return Err(ExecutionError::invalid_argument_count(
                    arity,
                    ftx.args.len(),
                ));
            }
            let path = match ftx.args.get(1).map(|a| Value::try_from(a.as_ref())) {
                None => String::new(),
                Some(Ok(Value::String(s))) => s.to_string(),
                Some(_) => {
                    return Err(ExecutionError::function_error(
                        name,
                        "path must be a string",
                    ))
                }
            };
            let arg = &ftx.args[0];
            let is_object = ftx
                .ptx
                .get_variable("object")
                .is_some_and(|o| std::ptr::addr_eq(&*o as *const _, &**arg as *const _));
            let result = if is_object {
                run(helper, &*object, &path)
            } else {
                run(helper, &Value::try_from(arg.as_ref())?, &path)
            };
            let boxed: Box<dyn Val> = result.try_into()?;
            Ok(cel::common::value::CowVal::Owned(boxed))
        });
        // The names are not standard overloads, so this cannot fail; if it
        // did, calls would fail as undeclared references, which fails closed.
        let _ = context.add_function(name, function);
    }
}

/// An evaluation error, described without the values involved: some
/// variants carry request data (a Secret's value compared to something), and
/// this text is kept in the decision and the audit log.
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(key) => format!("no such key '{key}'"),
        ExecutionError::UndeclaredReference(name) => format!("undeclared reference '{name}'"),
        ExecutionError::NoSuchOverload(overload) => overload.to_string(),
        ExecutionError::UnexpectedType { got, want } => {
            format!("unexpected type: got {got}, want {want}")
        }
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("wrong number of arguments: expected {expected}, got {actual}")
        }
        ExecutionError::FunctionError { function, .. } => format!("function '{function}' failed"),
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("{} cannot be compared to {}", a.type_of(), b.type_of())
        }
        ExecutionError::DivisionByZero(_) => "division by zero".to_string(),
        ExecutionError::IndexOutOfBounds(_) => "index out of bounds".to_string(),
        _ => "evaluation failed".to_string(),
    }
}

fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

fn list(items: Vec<Value>) -> Value {
    Value::List(Arc::new(items))
}

fn strings(items: Vec<&str>) -> Value {
    list(items.into_iter().map(string).collect())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::from(k.to_string()), v))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

fn request_value(ctx: &RequestContext<'_>) -> Value {
    let info = ctx.info;
    let headers: HashMap<Key, Value> = ctx
        .headers
        .iter()
        .map(|(k, v)| (Key::from(k.clone()), string(v)))
        .collect();
    map(vec![
        ("cluster", string(ctx.cluster)),
        ("method", string(ctx.method)),
        (
            "headers",
            Value::Map(Map {
                map: Arc::new(headers),
            }),
        ),
        ("isResourceRequest", Value::Bool(info.is_resource_request)),
        ("path", string(&info.path)),
        ("verb", string(&info.verb)),
        ("apiPrefix", string(&info.api_prefix)),
        ("apiGroup", string(&info.api_group)),
        ("apiVersion", string(&info.api_version)),
        ("namespace", string(&info.namespace)),
        ("resource", string(&info.resource)),
        ("subresource", string(&info.subresource)),
        ("name", string(&info.name)),
        ("fieldSelector", string(&info.field_selector)),
        ("labelSelector", string(&info.label_selector)),
    ])
}

fn identity_value(ctx: &RequestContext<'_>) -> Value {
    let id = ctx.identity;
    let opt = |s: &Option<String>| string(s.as_deref().unwrap_or_default());
    map(vec![
        ("user", string(&id.user)),
        ("uid", opt(&id.uid)),
        (
            "groups",
            list(id.groups.iter().map(|g| string(g)).collect()),
        ),
        ("clientId", opt(&id.client_id)),
        ("sessionId", opt(&id.session_id)),
        ("issuer", opt(&id.issuer)),
    ])
}

/// JSON straight to CEL's runtime representation, for the `object`
/// variable: half the allocations of going through [`Value`].
fn json_to_val(json: &Json) -> Box<dyn Val> {
    match json {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Json::String(s) => Box::new(CelString::from(s.clone())),
        Json::Array(items) => Box::new(CelList::from(
            items.iter().map(json_to_val).collect::<Vec<_>>(),
        )),
        Json::Object(members) => Box::new(CelMap::from(
            members
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.clone()), json_to_val(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// JSON to CEL. Integers become `int` (or `uint` above `i64::MAX`), so
/// `object.spec.replicas == 0` compares like with like.
pub(crate) fn json_to_cel(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => string(s),
        Json::Array(items) => list(items.iter().map(json_to_cel).collect()),
        Json::Object(members) => {
            let map: HashMap<Key, Value> = members
                .iter()
                .map(|(k, v)| (Key::from(k.clone()), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

// === impl Node for Value ===

impl Node for Value {
    fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Value::Map(m) => m.get(&cel::objects::KeyRef::String(key)),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }
    fn items(&self) -> &[Self] {
        match self {
            Value::List(items) => items.as_slice(),
            _ => &[],
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    fn to_cel(&self) -> Value {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every standard function the load-time check lets through exists at
    /// run time, so a condition using one cannot fail as "undeclared".
    #[test]
    fn standard_functions_compile_and_run() {
        let cases = [
            "size('a') == 1 && size([1]) == 1",
            "'abc'.contains('b') && 'abc'.startsWith('a') && 'abc'.endsWith('c')",
            "'abc'.matches('^a.c$')",
            "int('1') == 1 && uint(1) == 1u && double(1) == 1.0 && string(1) == '1'",
            "bool('true') && bytes('a') == b'a' && type(1) == int && dyn(1) == 1",
            "[1].exists(x, x == 1) && [1].all(x, x == 1) && [1].exists_one(x, x == 1)",
            "[1].map(x, x * 2) == [2] && [1, -1].filter(x, x > 0) == [1]",
            "has({'a': 1}.a)",
            "optional.of(1).hasValue() && optional.of(1).value() == 1",
            "optional.none().orValue(2) == 2 && optional.none().or(optional.of(3)).value() == 3",
            "optional.ofNonZeroValue(0).hasValue() == false",
        ];
        let context = Context::with_env(env());
        for source in cases {
            let program = compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(program.execute(&context), Ok(Value::Bool(true)), "{source}");
        }
    }

    #[test]
    fn unknown_functions_are_refused() {
        for source in [
            "frob(1)",
            "'a'.lowerAscii() == 'a'",
            "duration('1s') > duration('0s')",
        ] {
            assert!(compile(source).is_err(), "{source}");
        }
    }

    #[test]
    fn json_numbers_compare_as_ints() {
        let v = json_to_cel(&serde_json::json!({"n": 0, "big": u64::MAX, "f": 1.5}));
        let mut context = Context::with_env(env());
        context.add_variable_from_value("v", v);
        for source in ["v.n == 0", "v.big == 18446744073709551615u", "v.f == 1.5"] {
            let program = compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(program.execute(&context), Ok(Value::Bool(true)), "{source}");
        }
    }
}
