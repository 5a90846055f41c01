//! YAML bodies: buffered whole (bounded by `max_yaml_bytes`), each document converted to JSON,
//! masked by the JSON walker and written back as YAML. Formatting and comments are not kept;
//! the values are. The gateway normally asks the cluster for JSON instead.

use std::sync::Arc;

use serde::Deserialize;

use crate::json::{mask_unit, Hint};
use crate::{Engine, MaskError, Scope, StreamMasker};

/// Masks every document of a YAML body.
pub(crate) fn mask_yaml(
    eng: &Engine,
    scope: &Scope,
    body: &[u8],
    hint: &Hint,
) -> Result<Vec<u8>, MaskError> {
    let mut out = Vec::with_capacity(body.len());
    let mut first = true;
    for doc in serde_yaml::Deserializer::from_slice(body) {
        let value = serde_json::Value::deserialize(doc).map_err(MaskError::Yaml)?;
        let json = serde_json::to_vec(&value)
            .map_err(|_| MaskError::json(0, "yaml document has no json form"))?;
        let mut masked = Vec::with_capacity(json.len());
        mask_unit(eng, scope, &json, 0, hint, &mut masked)?;
        let value: serde_json::Value = serde_json::from_slice(&masked)
            .map_err(|_| MaskError::json(0, "masked yaml document is not json"))?;
        if !first {
            out.extend_from_slice(b"---\n");
        }
        first = false;
        serde_yaml::to_writer(&mut out, &value).map_err(MaskError::Yaml)?;
    }
    Ok(out)
}

/// Streaming front for YAML: buffers, then masks on `finish`.
pub(crate) struct YamlStream {
    eng: Arc<Engine>,
    scope: Scope,
    buf: Vec<u8>,
    max: usize,
    failed: bool,
}

impl YamlStream {
    pub(crate) fn new(eng: Arc<Engine>, scope: Scope) -> Self {
        let max = eng.max_yaml_bytes;
        YamlStream {
            eng,
            scope,
            buf: Vec::new(),
            max,
            failed: false,
        }
    }
}

impl StreamMasker for YamlStream {
    fn push(&mut self, chunk: &[u8], _out: &mut Vec<u8>) -> Result<(), MaskError> {
        if self.failed {
            return Err(MaskError::Poisoned);
        }
        if self.buf.len() + chunk.len() > self.max {
            self.failed = true;
            return Err(MaskError::YamlTooLarge(self.max));
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    fn flush(&mut self, _out: &mut Vec<u8>) -> Result<(), MaskError> {
        if self.failed {
            return Err(MaskError::Poisoned);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        if self.failed {
            return Err(MaskError::Poisoned);
        }
        match mask_yaml(&self.eng, &self.scope, &self.buf, &Hint::Primary(None)) {
            Ok(masked) => {
                out.extend_from_slice(&masked);
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn peak_buffered(&self) -> usize {
        self.buf.len()
    }
}
