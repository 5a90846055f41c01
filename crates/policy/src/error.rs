//! The crate's error type.

/// Why a policy could not be loaded. Messages name where the problem is
/// (`rules[3] "deny-x": match.verbs: ...`) so `airlock check-config` can print
/// them as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("reading policy file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The document is not valid YAML or does not have the policy's shape
    /// (unknown keys, wrong types).
    #[error("{context}: {source}")]
    Yaml {
        /// Where: `policy`, or the preset being expanded.
        context: String,
        /// The parser's error, with its line and column.
        #[source]
        source: serde_yaml::Error,
    },
    /// A value is well-formed YAML but not allowed (bad duration, empty
    /// approver list, unknown preset, ...).
    #[error("{location}: {message}")]
    Invalid {
        /// Where: `rules[3] "deny-x": approval.quorum`, `presets[0]`, ...
        location: String,
        /// What is wrong, for a human.
        message: String,
    },
    /// A rule's CEL condition does not compile, or calls a function that does
    /// not exist.
    #[error("{location}: condition: {message}")]
    Cel {
        /// The rule: `rules[3] "deny-x"`.
        location: String,
        /// The parser's message.
        message: String,
    },
    /// A request body could not be parsed as the JSON or YAML its content
    /// type claims (see [`crate::parse_object`]).
    #[error("request body: {0}")]
    Body(String),
    /// A request body that parses, but whose meaning to the cluster policy cannot see from
    /// the body alone (JSON patch `move`/`copy`; YAML merge keys, tags or YAML 1.1 booleans).
    /// Refused for every resource, whatever the conditions look at.
    #[error("request body: {0}")]
    Ambiguous(String),
}
