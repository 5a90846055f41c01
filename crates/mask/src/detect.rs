//! Secret detectors: built-in rules, gitleaks-format rules, and the keyword prefilter.
//!
//! A detector is a regex plus the keywords that any match must contain. One Aho-Corasick
//! automaton over all keywords (ASCII case-insensitive) runs first; a detector's regex runs only
//! when one of its keywords occurs in the text, so clean text costs one automaton pass.
//! Detectors without keywords (possible in gitleaks files) run on every text.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::marker::{Fingerprinter, FINGERPRINT_LEN, MARKER_PREFIX};
use crate::MaskError;

/// Id of the detector that masks a PEM private key.
pub const PEM_DETECTOR: &str = "pem-private-key";

/// Id used when a value is masked whole because its *name* looks sensitive
/// (an env var `DB_PASSWORD`, a ConfigMap key `api_token`, an annotation `x/secret`).
pub const SENSITIVE_NAME: &str = "sensitive-name";

/// Most bytes lowercased at a time for the keyword prefilter (at least 256; keywords must be
/// shorter than 256 bytes, so that blocks overlapping by a keyword's length still advance).
const LOWER_BLOCK: usize = 4096;

/// Regex size limit for one detector (compiled program size).
const REGEX_SIZE_LIMIT: usize = 4 << 20;

/// What a match is checked against before it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    /// Every match counts.
    None,
    /// An assignment value: skip booleans, nulls, references like `${X}` and markers.
    AssignmentValue,
}

/// One compiled detector.
#[derive(Debug)]
pub(crate) struct Detector {
    pub(crate) id: String,
    regex: Regex,
    secret_group: usize,
    keywords: Vec<String>,
    filter: Filter,
    /// How far before one of its keywords a match can start, when that is known (a regex
    /// that starts with its keyword: 0); the search then starts there, not at the text's
    /// start. `None` (gitleaks rules): search the whole text.
    lead: Option<usize>,
}

/// A span of text to replace, and which detector found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Start of the whole regex match (the key of an assignment, the scheme of a URL).
    pub(crate) match_start: usize,
    pub(crate) detector: usize,
}

/// Result of scanning one text.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Non-overlapping hits, sorted by start.
    pub(crate) hits: Vec<Hit>,
    /// A PEM private key begins in the text and does not end in it.
    pub(crate) pem_open: bool,
    /// The keyword prefilter found nothing: no keyword occurs anywhere in the text.
    pub(crate) no_keywords: bool,
}

/// Which detectors to run on a field.
#[derive(Clone, Debug)]
pub(crate) enum Selection {
    All,
    Only(Vec<bool>),
}

impl Selection {
    fn allows(&self, detector: usize) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(set) => set.get(detector).copied().unwrap_or(false),
        }
    }
}

/// All detectors, compiled once.
#[derive(Debug)]
pub(crate) struct DetectorSet {
    detectors: Vec<Detector>,
    /// Keyword automaton; pattern i belongs to detector `owner[i]`.
    keywords: Option<AhoCorasick>,
    /// SIMD searcher over the lowercased keywords, for the "any keyword at all?" check on
    /// lowercased text (case-insensitive automata cannot use the SIMD prefilters).
    any_keyword: Option<aho_corasick::packed::Searcher>,
    owner: Vec<usize>,
    /// Lowercased keywords, for the "text ends with the start of a keyword" check.
    keyword_text: Vec<Vec<u8>>,
    /// Indices into `keyword_text` by the keyword's first byte.
    by_first: Vec<Vec<usize>>,
    /// Length of the longest and of the shortest keyword.
    longest_keyword: usize,
    shortest_keyword: usize,
    /// No keyword holds a character JSON must escape (`"`, `\\`, control characters).
    keywords_json_plain: bool,
    /// Detectors that have no keywords and so run on everything.
    always: Vec<usize>,
    pem: Option<usize>,
}

struct Builtin {
    id: &'static str,
    regex: &'static str,
    secret_group: usize,
    keywords: &'static [&'static str],
    filter: Filter,
    /// See [`Detector::lead`]: `Some` only when *every* match of the regex holds one of the
    /// keywords that close to its start (the `builtin_leads` test checks the examples).
    lead: Option<usize>,
}

/// Built-in detectors. Regexes run in byte mode without Unicode classes (`(?-u)`), so `\s`,
/// `\b` and classes are ASCII; match boundaries always fall on ASCII bytes.
const BUILTINS: &[Builtin] = &[
    Builtin {
        id: PEM_DETECTOR,
        // An unterminated key is masked to the end of the text (fail closed).
        regex: r"(?s-u)-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)",
        secret_group: 0,
        keywords: &["-----begin"],
        lead: Some(0),
        filter: Filter::None,
    },
    Builtin {
        id: "jwt",
        regex: r"(?-u)\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        secret_group: 0,
        keywords: &["eyj"],
        lead: Some(0),
        filter: Filter::None,
    },
    Builtin {
        id: "aws-access-key-id",
        regex: r"(?-u)\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
        secret_group: 0,
        keywords: &["akia", "asia", "abia", "acca"],
        lead: Some(0),
        filter: Filter::None,
    },
    Builtin {
        id: "aws-secret-access-key",
        regex: r#"(?-u)(?i:secret_?access_?key)["']?[ \t]*[:=][ \t]*["']?([A-Za-z0-9/+=]{40})"#,
        secret_group: 1,
        keywords: &["secret_access_key", "secretaccesskey"],
        // `secret_accesskey` matches but holds neither keyword.
        lead: None,
        filter: Filter::None,
    },
    Builtin {
        id: "gcp-service-account",
        regex: r#"(?-u)"private_key(?:_id)?"[ \t]*:[ \t]*"((?:[^"\\]|\\.)+)""#,
        secret_group: 1,
        keywords: &["private_key"],
        lead: Some(1),
        filter: Filter::None,
    },
    Builtin {
        id: "azure-connection-string",
        regex: r#"(?-u)(?i:AccountKey|SharedAccessKey|SharedAccessSignature)=([^;"'\s]+)"#,
        secret_group: 1,
        keywords: &["accountkey=", "sharedaccesskey=", "sharedaccesssignature="],
        lead: Some(0),
        filter: Filter::None,
    },
    Builtin {
        id: "github-token",
        regex: r"(?-u)\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})",
        secret_group: 0,
        keywords: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        lead: Some(0),
        filter: Filter::None,
    },
    Builtin {
        id: "gitlab-token",
        regex: r"(?-u)\bglpat-[A-Za-z0-9_-]{20,}",
        secret_group: 0,
        keywords: &["glpat-"],
        lead: Some(0),
        filter: Filter::None,
    },
    Builtin {
        id: "slack-token",
        regex: r"(?-u)\bxox[abposr]-[A-Za-z0-9-]{10,}",
        secret_group: 0,
        keywords: &["xoxa-", "xoxb-", "xoxo-", "xoxp-", "xoxr-", "xoxs-"],
        lead: Some(0),
        filter: Filter::None,
    },
    Builtin {
        id: "stripe-key",
        regex: r"(?-u)\b[sr]k_live_[A-Za-z0-9]{16,}",
        secret_group: 0,
        keywords: &["sk_live_", "rk_live_"],
        lead: Some(0),
        filter: Filter::None,
    },
    Builtin {
        id: "database-url-password",
        // Starts at `://` rather than at the scheme, so a scheme already emitted by the text
        // stream does not stop the match.
        regex: r#"(?-u)://[^:/?#@\s"'<>]{1,256}:([^@/?#\s"'<>]{1,256})@"#,
        secret_group: 1,
        keywords: &["://"],
        lead: Some(0),
        filter: Filter::AssignmentValue,
    },
    Builtin {
        id: "bearer-token",
        regex: r"(?-u)\b(?i:bearer)[ \t]+([A-Za-z0-9._~+/=-]{8,})",
        secret_group: 1,
        keywords: &["bearer"],
        lead: Some(0),
        filter: Filter::AssignmentValue,
    },
    Builtin {
        id: "basic-auth",
        regex: r"(?-u)(?i:authorization)[ \t]*:[ \t]*(?i:basic)[ \t]+([A-Za-z0-9+/=]{6,})",
        secret_group: 1,
        keywords: &["authorization"],
        lead: Some(0),
        filter: Filter::None,
    },
    Builtin {
        id: "generic-assignment",
        regex: r#"(?-u)(?i:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|private[_-]?key|credentials?)["']?[ \t]*[:=][ \t]*["']?([^\s"',;&]+)"#,
        secret_group: 1,
        keywords: &[
            "password",
            "passwd",
            "pwd",
            "secret",
            "token",
            "api_key",
            "api-key",
            "apikey",
            "access_key",
            "access-key",
            "accesskey",
            "auth_key",
            "auth-key",
            "authkey",
            "private_key",
            "private-key",
            "privatekey",
            "credential",
        ],
        lead: Some(0),
        filter: Filter::AssignmentValue,
    },
];

// === impl DetectorSet ===

impl DetectorSet {
    /// Built-in detectors plus the rules of each gitleaks file; returns notes about ignored
    /// features.
    pub(crate) fn new(gitleaks: &[String]) -> Result<(Self, Vec<String>), MaskError> {
        let mut detectors = Vec::new();
        for b in BUILTINS {
            detectors.push(Detector {
                id: b.id.to_string(),
                regex: compile(b.id, b.regex)?,
                secret_group: b.secret_group,
                keywords: b.keywords.iter().map(|k| k.to_string()).collect(),
                filter: b.filter,
                lead: b.lead,
            });
        }
        let mut notes = Vec::new();
        for file in gitleaks {
            detectors.extend(parse_gitleaks(file, &mut notes)?);
        }
        Self::from_detectors(detectors).map(|set| (set, notes))
    }

    fn from_detectors(detectors: Vec<Detector>) -> Result<Self, MaskError> {
        let mut patterns = Vec::new();
        let mut owner = Vec::new();
        let mut always = Vec::new();
        for (i, d) in detectors.iter().enumerate() {
            if d.keywords.is_empty() {
                always.push(i);
            }
            for k in &d.keywords {
                patterns.push(k.to_ascii_lowercase().into_bytes());
                owner.push(i);
            }
        }
        let keywords = if patterns.is_empty() {
            None
        } else {
            let ac = AhoCorasickBuilder::new()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .map_err(|e| MaskError::Rule {
                    rule: "keywords".to_string(),
                    reason: e.to_string(),
                })?;
            Some(ac)
        };
        let pem = detectors.iter().position(|d| d.id == PEM_DETECTOR);
        let mut packed = aho_corasick::packed::Config::new().builder();
        for p in &patterns {
            packed.add(p);
        }
        let any_keyword = packed.build();
        let longest_keyword = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let shortest_keyword = patterns.iter().map(Vec::len).min().unwrap_or(0);
        let keywords_json_plain = patterns
            .iter()
            .flatten()
            .all(|&c| c >= 0x20 && c != b'"' && c != b'\\');
        if longest_keyword >= 256 {
            return Err(MaskError::Rule {
                rule: "keywords".to_string(),
                reason: "a keyword is longer than 255 bytes".to_string(),
            });
        }
        let mut by_first: Vec<Vec<usize>> = vec![Vec::new(); 256];
        for (i, p) in patterns.iter().enumerate() {
            if let Some(&c) = p.first() {
                by_first[usize::from(c)].push(i);
            }
        }
        Ok(DetectorSet {
            detectors,
            keywords,
            any_keyword,
            owner,
            keyword_text: patterns,
            by_first,
            longest_keyword,
            shortest_keyword,
            keywords_json_plain,
            always,
            pem,
        })
    }

    /// Index of the detector with this id.
    pub(crate) fn index(&self, id: &str) -> Option<usize> {
        self.detectors.iter().position(|d| d.id == id)
    }

    pub(crate) fn len(&self) -> usize {
        self.detectors.len()
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.detectors.iter().map(|d| d.id.as_str())
    }

    pub(crate) fn id(&self, detector: usize) -> &str {
        self.detectors
            .get(detector)
            .map(|d| d.id.as_str())
            .unwrap_or("detector")
    }

    /// Finds secrets in `text`.
    pub(crate) fn scan(&self, text: &[u8], selection: &Selection) -> Scan {
        let mut scan = Scan::default();
        // Where each wanted detector's regex starts searching.
        let mut from: Vec<Option<usize>> = Vec::new();
        if let Some(ac) = &self.keywords {
            // Fast path for clean text: one accelerated search; the overlapping walk that
            // finds every keyword runs only when there is at least one, and only from there.
            match self.first_keyword(ac, text) {
                None => {
                    scan.no_keywords = true;
                    if self.always.is_empty() {
                        return scan;
                    }
                }
                Some(first) => {
                    from = vec![None; self.detectors.len()];
                    let input = aho_corasick::Input::new(text).span(first..text.len());
                    for m in ac.find_overlapping_iter(input) {
                        let d = self.owner[m.pattern().as_usize()];
                        let lead = self.detectors[d].lead.unwrap_or(usize::MAX);
                        let start = m.start().saturating_sub(lead);
                        from[d] = Some(from[d].map_or(start, |f: usize| f.min(start)));
                    }
                }
            }
        }
        if from.is_empty() {
            if self.always.is_empty() {
                return scan;
            }
            from = vec![None; self.detectors.len()];
        }
        for &i in &self.always {
            from[i] = Some(0);
        }
        for (i, d) in self.detectors.iter().enumerate() {
            let Some(mut at) = from[i] else { continue };
            if !selection.allows(i) {
                continue;
            }
            let mut locs = d.regex.capture_locations();
            while at <= text.len() {
                let Some(whole) = d.regex.captures_read_at(&mut locs, text, at) else {
                    break;
                };
                at = whole.end() + usize::from(whole.is_empty());
                let (start, end) = match d.secret_group {
                    0 => (whole.start(), whole.end()),
                    g => locs.get(g).unwrap_or((whole.start(), whole.end())),
                };
                if start == end || !passes(d.filter, &text[start..end]) {
                    continue;
                }
                if Some(i) == self.pem
                    && whole.end() == text.len()
                    && memchr::memmem::find(whole.as_bytes(), b"-----END").is_none()
                {
                    scan.pem_open = true;
                }
                scan.hits.push(Hit {
                    start,
                    end,
                    match_start: whole.start(),
                    detector: i,
                });
            }
        }
        drop_inside_markers(text, &mut scan.hits);
        merge(&mut scan.hits);
        scan
    }

    /// Where the leftmost keyword occurrence starts (ASCII case-insensitive), if any.
    fn first_keyword(&self, ac: &AhoCorasick, text: &[u8]) -> Option<usize> {
        if text.len() < self.shortest_keyword {
            return None;
        }
        let Some(packed) = &self.any_keyword else {
            return ac.find(text).map(|m| m.start());
        };
        // Lowercase a block at a time into a buffer on the stack (it stays in L1 and costs
        // no allocation, only zeroing: short texts get a short block).
        let overlap = self.longest_keyword.saturating_sub(1);
        match text.len() {
            0..=256 => find_lowercased::<256>(packed, text, overlap),
            257..=1024 => find_lowercased::<1024>(packed, text, overlap),
            _ => find_lowercased::<LOWER_BLOCK>(packed, text, overlap),
        }
    }

    /// Whether no keyword holds a character that JSON must escape, so a keyword in a JSON
    /// string's decoded text also occurs in its raw text unless a `\\u` or `\\/` escape
    /// spells part of it.
    pub(crate) fn keywords_json_plain(&self) -> bool {
        self.keywords_json_plain
    }

    /// Whether `text` may contain a keyword (case-insensitive). False means no detector with
    /// keywords can match; [`has_keywordless`](Self::has_keywordless) tells whether others run
    /// anyway.
    pub(crate) fn may_match(&self, text: &[u8]) -> bool {
        match &self.keywords {
            Some(ac) => self.first_keyword(ac, text).is_some(),
            None => false,
        }
    }

    /// Replaces each hit with `[airlock:masked:<detector>:<fp>]`; `None` when nothing matched.
    pub(crate) fn mask(
        &self,
        text: &[u8],
        selection: &Selection,
        fp: &Fingerprinter,
    ) -> Option<Vec<u8>> {
        let scan = self.scan(text, selection);
        if scan.hits.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(text.len());
        self.apply(text, &scan.hits, fp, &mut out);
        Some(out)
    }

    /// Writes `text` with `hits` replaced by markers.
    pub(crate) fn apply(&self, text: &[u8], hits: &[Hit], fp: &Fingerprinter, out: &mut Vec<u8>) {
        let mut at = 0;
        for h in hits {
            out.extend_from_slice(&text[at..h.start]);
            fp.text_marker(self.id(h.detector), &text[h.start..h.end], out);
            at = h.end;
        }
        out.extend_from_slice(&text[at..]);
    }

    /// Start positions of keyword occurrences in `text`.
    pub(crate) fn keyword_starts<'t>(&'t self, text: &'t [u8]) -> impl Iterator<Item = usize> + 't {
        self.keywords
            .iter()
            .flat_map(move |ac| ac.find_overlapping_iter(text).map(|m| m.start()))
    }

    /// Start of the longest suffix of `text` that is a proper prefix of some keyword: the text
    /// may continue into that keyword.
    pub(crate) fn partial_keyword_suffix(&self, text: &[u8]) -> Option<usize> {
        // Only the last `longest - 1` bytes can start such a suffix; the earliest start that
        // works is the longest suffix.
        let from = text
            .len()
            .saturating_sub(self.longest_keyword.saturating_sub(1));
        (from..text.len()).find(|&start| {
            let tail = &text[start..];
            let first = usize::from(tail[0].to_ascii_lowercase());
            self.by_first[first].iter().any(|&k| {
                let k = &self.keyword_text[k];
                k.len() > tail.len() && tail.eq_ignore_ascii_case(&k[..tail.len()])
            })
        })
    }

    /// Whether any detector has no keywords (so holding back by keyword is not enough).
    pub(crate) fn has_keywordless(&self) -> bool {
        !self.always.is_empty()
    }
}

/// Start of the leftmost match of `packed` (lowercase patterns) in `text` lowercased, block by
/// block; blocks overlap by `overlap` bytes (the longest pattern less one), so a pattern that
/// straddles two blocks is found in the second.
fn find_lowercased<const N: usize>(
    packed: &aho_corasick::packed::Searcher,
    text: &[u8],
    overlap: usize,
) -> Option<usize> {
    let mut block = [0u8; N];
    let mut start = 0;
    loop {
        let end = (start + N).min(text.len());
        let lower = &mut block[..end - start];
        // One pass (vectorised): copy and lowercase together.
        for (l, &c) in lower.iter_mut().zip(&text[start..end]) {
            *l = c.to_ascii_lowercase();
        }
        if let Some(m) = packed.find(lower) {
            return Some(start + m.start());
        }
        if end == text.len() {
            return None;
        }
        start = end - overlap;
    }
}

fn compile(id: &str, regex: &str) -> Result<Regex, MaskError> {
    RegexBuilder::new(regex)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|source| MaskError::Regex {
            id: id.to_string(),
            source,
        })
}

fn passes(filter: Filter, value: &[u8]) -> bool {
    match filter {
        Filter::None => true,
        Filter::AssignmentValue => {
            if value.len() < 3 || value.starts_with(b"${") || value.starts_with(b"$(") {
                return false;
            }
            if memchr::memmem::find(value, MARKER_PREFIX.as_bytes()).is_some() {
                return false;
            }
            const PLAIN: &[&[u8]] = &[b"true", b"false", b"null", b"none", b"nil", b"yes"];
            !PLAIN.iter().any(|p| value.eq_ignore_ascii_case(p))
        }
    }
}

/// Drops hits that touch an existing `[airlock:masked:...]` marker, so masking twice
/// changes nothing (marker text contains words like `password:` in detector ids).
fn drop_inside_markers(text: &[u8], hits: &mut Vec<Hit>) {
    let opener = b"[airlock:masked:";
    if hits.is_empty() || memchr::memmem::find(text, opener).is_none() {
        return;
    }
    let mut spans = Vec::new();
    for start in memchr::memmem::find_iter(text, opener) {
        // Only a well-formed marker counts: `[airlock:masked:<id>:<fp>]`.
        let rest = &text[start + opener.len()..];
        let id = rest
            .iter()
            .take(64)
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            .count();
        let fp = rest.get(id + 1..id + 1 + FINGERPRINT_LEN);
        let well_formed = id > 0
            && rest.get(id) == Some(&b':')
            && fp.is_some_and(|f| f.iter().all(u8::is_ascii_hexdigit))
            && rest.get(id + 1 + FINGERPRINT_LEN) == Some(&b']');
        if well_formed {
            spans.push((start, start + opener.len() + id + 2 + FINGERPRINT_LEN));
        }
    }
    hits.retain(|h| !spans.iter().any(|&(s, e)| h.match_start < e && h.end > s));
}

/// Sorts hits and merges overlapping ones (the first detector's id is kept).
fn merge(hits: &mut Vec<Hit>) {
    if hits.len() < 2 {
        return;
    }
    hits.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut merged: Vec<Hit> = Vec::with_capacity(hits.len());
    for h in hits.drain(..) {
        match merged.last_mut() {
            Some(last) if h.start < last.end => {
                last.end = last.end.max(h.end);
                last.match_start = last.match_start.min(h.match_start);
            }
            _ => merged.push(h),
        }
    }
    *hits = merged;
}

/// True when a field *name* says its value is a credential: after dropping everything but
/// letters and digits and lowercasing, the name ends with one of the sensitive words
/// (`DB_PASSWORD`, `api-token`, `clientSecret`, `AWS_SECRET_ACCESS_KEY`), but not `SECRET_NAME`
/// or `TOKEN_URL`, whose values are references rather than secrets.
pub(crate) fn sensitive_name(name: &[u8]) -> bool {
    const WORDS: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"secret",
        b"token",
        b"apikey",
        b"accesskey",
        b"privatekey",
        b"credentials",
        b"credential",
        b"connectionstring",
    ];
    let mut norm = [0u8; 64];
    let mut n = 0;
    // Keep the last 64 normalized bytes: the check looks at the end of the name.
    for &b in name {
        if b.is_ascii_alphanumeric() {
            if n == norm.len() {
                norm.copy_within(1.., 0);
                n -= 1;
            }
            norm[n] = b.to_ascii_lowercase();
            n += 1;
        }
    }
    let norm = &norm[..n];
    WORDS.iter().any(|w| norm.ends_with(w))
}

// === gitleaks ===

#[derive(Deserialize)]
struct GitleaksFile {
    #[serde(default)]
    rules: Vec<GitleaksRule>,
    #[serde(default)]
    allowlist: Option<toml::Value>,
    #[serde(default)]
    extend: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GitleaksRule {
    id: String,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    secret_group: Option<usize>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    allowlist: Option<toml::Value>,
    #[serde(default)]
    allowlists: Option<toml::Value>,
}

/// Parses a gitleaks config (`[[rules]]` with `id`, `regex`, `keywords`, `secretGroup`).
/// Allowlists, `entropy`, `path` and `[extend]` are not supported: they are ignored (which only
/// ever masks more) and each is reported in `notes`. Rules without a `regex` are skipped.
fn parse_gitleaks(text: &str, notes: &mut Vec<String>) -> Result<Vec<Detector>, MaskError> {
    let file: GitleaksFile = toml::from_str(text).map_err(MaskError::Gitleaks)?;
    if file.allowlist.is_some() {
        notes.push("gitleaks: global [allowlist] ignored".to_string());
    }
    if file.extend.is_some() {
        notes.push("gitleaks: [extend] ignored; list every rule in the file".to_string());
    }
    let mut out = Vec::new();
    for rule in file.rules {
        let Some(regex) = rule.regex else {
            notes.push(format!(
                "gitleaks rule {}: no regex (path-only rule), skipped",
                rule.id
            ));
            continue;
        };
        if rule.entropy.is_some() {
            notes.push(format!("gitleaks rule {}: entropy ignored", rule.id));
        }
        if rule.path.is_some() {
            notes.push(format!("gitleaks rule {}: path ignored", rule.id));
        }
        if rule.allowlist.is_some() || rule.allowlists.is_some() {
            notes.push(format!("gitleaks rule {}: allowlist ignored", rule.id));
        }
        if rule.keywords.is_empty() {
            notes.push(format!(
                "gitleaks rule {}: no keywords, its regex runs on every value",
                rule.id
            ));
        }
        let compiled = compile(&rule.id, &regex)?;
        let secret_group = rule.secret_group.unwrap_or(0);
        if secret_group > compiled.captures_len().saturating_sub(1) {
            return Err(MaskError::Rule {
                rule: format!("gitleaks rule {}", rule.id),
                reason: format!("secretGroup {secret_group} does not exist in the regex"),
            });
        }
        out.push(Detector {
            id: rule.id,
            regex: compiled,
            secret_group,
            keywords: rule.keywords,
            filter: Filter::None,
            lead: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> DetectorSet {
        DetectorSet::new(&[]).unwrap().0
    }

    fn masked(text: &str) -> String {
        let fp = Fingerprinter::new(b"test-key").unwrap();
        match set().mask(text.as_bytes(), &Selection::All, &fp) {
            Some(v) => String::from_utf8(v).unwrap(),
            None => text.to_string(),
        }
    }

    /// (input, secret that must disappear, text that must stay, detector id expected)
    const CASES: &[(&str, &str, &str, &str)] = &[
        (
            "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nafter",
            "MIIEpAIBAAKCAQEA",
            "after",
            "pem-private-key",
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA (cut)",
            "b3BlbnNzaC1rZXktdjEAAAAA",
            "",
            "pem-private-key",
        ),
        (
            "token is eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlc2ln done",
            "eyJzdWIiOiJzeXN0ZW0ifQ",
            "done",
            "jwt",
        ),
        ("id AKIAIOSFODNN7EXAMPLE end", "AKIAIOSFODNN7EXAMPLE", "end", "aws-access-key-id"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key",
            "aws-secret-access-key",
        ),
        (
            r#"{"type": "service_account", "private_key_id": "abc123", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n"}"#,
            "MIIEvQ",
            "service_account",
            "gcp-service-account",
        ),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5c2VjcmV0a2V5==;EndpointSuffix=core.windows.net",
            "c2VjcmV0a2V5c2VjcmV0a2V5==",
            "EndpointSuffix=core.windows.net",
            "azure-connection-string",
        ),
        (
            "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=abcDEF123456=",
            "abcDEF123456=",
            "SharedAccessKeyName=k",
            "azure-connection-string",
        ),
        (
            "GH ghp_abcdefghijklmnopqrstuvwxyz0123456789 x",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            " x",
            "github-token",
        ),
        (
            "github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz",
            "github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz",
            "",
            "github-token",
        ),
        ("glpat-abcdefghij0123456789xyz", "glpat-abcdefghij0123456789xyz", "", "gitlab-token"),
        ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij", "slack", "slack-token"),
        ("sk_live_abcdefghijklmnop1234", "sk_live_abcdefghijklmnop1234", "", "stripe-key"),
        (
            "DATABASE_URL=postgres://app:hunter2pass@db:5432/app",
            "hunter2pass",
            "postgres://app:",
            "database-url-password",
        ),
        (
            "Authorization: Bearer abcdef0123456789.xyz",
            "abcdef0123456789.xyz",
            "Authorization: Bearer ",
            "bearer-token",
        ),
        ("password=hunter22 next", "hunter22", " next", "generic-assignment"),
        ("DB_PASSWD: 's3cr3t!' ok", "s3cr3t!", "DB_PASSWD", "generic-assignment"),
        ("client_secret: abcdefg", "abcdefg", "client_secret", "generic-assignment"),
        ("API_KEY=1234567890abcdef", "1234567890abcdef", "API_KEY=", "generic-assignment"),
        ("{\"token\":\"tok-12345\"}", "tok-12345", "{\"token\":\"", "generic-assignment"),
    ];

    #[test]
    fn detectors_table() {
        for (input, secret, kept, id) in CASES {
            let out = masked(input);
            assert!(!out.contains(secret), "{id}: {secret:?} left in {out:?}");
            assert!(out.contains(kept), "{id}: {kept:?} lost in {out:?}");
            assert!(
                out.contains(&format!("[airlock:masked:{id}:")),
                "{id}: {out:?}"
            );
        }
    }

    /// Each built-in's `lead`: a match found from the start of the text is found as well when
    /// the search starts `lead` bytes before the match's first keyword.
    #[test]
    fn builtin_leads() {
        let s = set();
        for (input, _, _, id) in CASES {
            let d = s.index(id).unwrap();
            let det = &s.detectors[d];
            let Some(lead) = det.lead else { continue };
            for m in det.regex.find_iter(input.as_bytes()) {
                let lower = m.as_bytes().to_ascii_lowercase();
                let first = det
                    .keywords
                    .iter()
                    .filter_map(|k| memchr::memmem::find(&lower, k.as_bytes()))
                    .min()
                    .unwrap_or_else(|| panic!("{id}: no keyword in {:?}", m.as_bytes()));
                assert!(first <= lead, "{id}: keyword at {first} of the match");
            }
        }
    }

    #[test]
    fn clean_text_is_untouched() {
        for text in [
            "plain log line without anything",
            "automountServiceAccountToken: true",
            "secretName: my-secret",
            "see https://example.com/path?x=1",
            "password: ${DB_PASSWORD}",
            "token=[airlock:masked:jwt:0123456789ab]",
        ] {
            assert_eq!(masked(text), text);
        }
    }

    #[test]
    fn sensitive_names() {
        for yes in [
            "DB_PASSWORD",
            "api-token",
            "clientSecret",
            "AWS_SECRET_ACCESS_KEY",
            "x.io/api_key",
        ] {
            assert!(sensitive_name(yes.as_bytes()), "{yes}");
        }
        for no in [
            "SECRET_NAME",
            "TOKEN_URL",
            "PASSWORD_FILE",
            "PWD",
            "HOME",
            "tokenExpirationSeconds",
        ] {
            assert!(!sensitive_name(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn gitleaks_rules_load_and_report_unsupported_features() {
        let file = r#"
title = "custom"
[allowlist]
paths = ["x"]

[[rules]]
id = "acme-key"
description = "ACME API key"
regex = '''acme_([a-z0-9]{16})'''
secretGroup = 1
keywords = ["acme_"]
entropy = 3.5

[[rules]]
id = "path-only"
path = '''\.pem$'''
"#;
        let (set, notes) = DetectorSet::new(&[file.to_string()]).unwrap();
        assert!(set.index("acme-key").is_some());
        assert!(notes.iter().any(|n| n.contains("entropy")));
        assert!(notes.iter().any(|n| n.contains("path-only")));
        assert!(notes.iter().any(|n| n.contains("allowlist")));
        let fp = Fingerprinter::new(b"k").unwrap();
        let out = set
            .mask(b"key acme_0123456789abcdef!", &Selection::All, &fp)
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("key acme_[airlock:masked:acme-key:"),
            "{out}"
        );
        assert!(out.ends_with("]!"));
    }

    #[test]
    fn partial_keyword_suffix_finds_split_keywords() {
        let s = set();
        assert_eq!(s.partial_keyword_suffix(b"export PASS"), Some(7));
        assert_eq!(s.partial_keyword_suffix(b"-----BEG"), Some(0));
        assert_eq!(s.partial_keyword_suffix(b"hello world\n"), None);
    }
}
