//! History as CSV, the same columns from the CLI (`history --csv`) and the
//! app's "Export CSV", so a spreadsheet built on one keeps working with the
//! other.

use crate::model::{Job, JobState};

/// The header line's columns, in order.
pub const HISTORY_COLUMNS: &[&str] = &[
    "job",
    "approved_at",
    "approved_by",
    "account",
    "node_id",
    "device",
    "from_version",
    "to_version",
    "result",
    "reason",
    "duration_s",
    "finished_at",
];

/// The plain reason a job ended as it did, or "" when there is none
/// (the same words as every view: [`crate::words::reason`]).
pub fn state_reason(s: &JobState) -> String {
    crate::words::reason(s)
}

/// One CSV field. Device names and release texts come from devices and
/// clouds we do not control: a leading `=`, `+`, `-` or `@` would make a
/// spreadsheet run it as a formula, so such a field is prefixed with `'`.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The history as CSV (header included, `\n` line ends); `device` names a
/// node id for the `device` column. Times are Unix milliseconds.
pub fn history_csv(jobs: &[Job], device: impl Fn(&str) -> String) -> String {
    let mut out = HISTORY_COLUMNS.join(",");
    out.push('\n');
    for j in jobs {
        let fields = [
            j.id.to_string(),
            j.created_at.to_string(),
            j.approved_by.clone(),
            j.account.clone(),
            j.node_id.clone(),
            device(&j.node_id),
            j.from_version.clone().unwrap_or_default(),
            j.to_version.clone(),
            j.state.name().to_string(),
            state_reason(&j.state),
            j.finished_at
                .map(|f| ((f - j.created_at) / 1000).to_string())
                .unwrap_or_default(),
            j.finished_at.map(|f| f.to_string()).unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("Kitchen Plug"), "Kitchen Plug");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
