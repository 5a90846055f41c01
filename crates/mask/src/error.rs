//! The one error type of the masking engine.
//!
//! Messages never quote body content: a parse error names a byte offset and a reason, never
//! the bytes around it, because those bytes may be the secret the masker failed to mask.

/// Everything that can go wrong while configuring or running the masker.
///
/// Every variant raised while masking a body means *fail closed*: the caller must not forward
/// the body (or the rest of it) to the client.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// The JSON body is malformed at `offset` (counted from the start of the body).
    #[error("invalid json at byte {offset}: {reason}")]
    Json {
        /// Byte offset from the start of the body.
        offset: u64,
        /// What was expected there.
        reason: &'static str,
    },
    /// The body ended in the middle of a JSON document.
    #[error("json body ended in the middle of a document")]
    Truncated,
    /// JSON nested deeper than the masker follows.
    #[error("json nested deeper than {0} levels")]
    TooDeep(usize),
    /// The YAML body could not be parsed or re-serialized.
    #[error("invalid yaml body")]
    Yaml(#[source] serde_yaml::Error),
    /// A YAML body is buffered whole; this one is larger than the configured bound.
    #[error("yaml body larger than {0} bytes; ask for json instead")]
    YamlTooLarge(usize),
    /// The content type cannot be masked (e.g. protobuf); the gateway must not forward it.
    #[error("content type {0:?} cannot be masked")]
    Unsupported(String),
    /// A masking rule or profile in the configuration is invalid.
    #[error("invalid masking rule {rule}: {reason}")]
    Rule {
        /// Which rule (profile name and position).
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request named a masking profile that the configuration does not define.
    #[error("unknown masking profile {0:?}")]
    UnknownProfile(String),
    /// A gitleaks rules file could not be parsed.
    #[error("invalid gitleaks rules file")]
    Gitleaks(#[source] toml::de::Error),
    /// A detector regex (built-in or from a rules file) does not compile.
    #[error("detector {id}: invalid regex")]
    Regex {
        /// Detector id.
        id: String,
        /// Compilation error.
        #[source]
        source: regex::Error,
    },
    /// The fingerprint key is empty.
    #[error("fingerprint key must not be empty")]
    EmptyKey,
    /// The stream already failed; it refuses further input.
    #[error("masking stream already failed")]
    Poisoned,
}

impl MaskError {
    pub(crate) fn json(offset: u64, reason: &'static str) -> Self {
        MaskError::Json { offset, reason }
    }
}
