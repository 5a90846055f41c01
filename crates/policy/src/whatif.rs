//! What-if: replay recorded requests against two policies and report where
//! they disagree. Behind `airlock policy test --from-audit`.

use serde::Serialize;

use crate::{Decision, Policy, RequestContext, Verdict};

/// One request the two policies treat differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WhatIfChange {
    /// Its position in the input.
    pub index: usize,
    /// The current policy's decision.
    pub before: Decision,
    /// The candidate policy's decision.
    pub after: Decision,
}

/// The result of [`what_if`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WhatIfReport {
    /// How many requests were evaluated.
    pub total: usize,
    /// The requests whose decisions differ in effect ([`Decision::same_effect`]),
    /// in input order.
    pub changes: Vec<WhatIfChange>,
}

impl WhatIfReport {
    /// How many changes went from `from` to `to` (e.g. allow -> deny).
    pub fn count(&self, from: Verdict, to: Verdict) -> usize {
        self.changes
            .iter()
            .filter(|c| c.before.verdict == from && c.after.verdict == to)
            .count()
    }
}

/// Evaluates every request against `before` and `after` and reports the
/// requests whose decisions differ in effect: verdict, approval requirements
/// or mask profiles. Which rule decided is not a difference by itself.
pub fn what_if<'r>(
    before: &Policy,
    after: &Policy,
    requests: impl IntoIterator<Item = &'r RequestContext<'r>>,
) -> WhatIfReport {
    let mut report = WhatIfReport::default();
    for (index, ctx) in requests.into_iter().enumerate() {
        report.total += 1;
        let (b, a) = (before.evaluate(ctx), after.evaluate(ctx));
        if !b.same_effect(&a) {
            report.changes.push(WhatIfChange {
                index,
                before: b,
                after: a,
            });
        }
    }
    report
}
