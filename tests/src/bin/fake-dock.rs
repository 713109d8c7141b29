//! A dock, as far as Greenlight's app badge is concerned: owns
//! `com.canonical.Unity` on the session bus (what GNOME's Dash to Dock,
//! KDE's task manager and Plank do, so that libunity sends them launcher
//! updates) and prints each `com.canonical.Unity.LauncherEntry.Update`
//! signal it hears as one JSON line: `{"app_uri", "count", "count_visible"}`.
//! `scripts/e2e.sh` runs it beside the app; `ui/e2e/demo.test.mjs` reads
//! the count a user's dock would show.

use std::collections::HashMap;
use std::io::Write;

use zbus::zvariant::OwnedValue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conn = zbus::blocking::Connection::session()?;
    // libunity stays silent while nobody owns this name.
    conn.request_name("com.canonical.Unity")?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("com.canonical.Unity.LauncherEntry")?
        .member("Update")?
        .build();
    let updates = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, None)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{{\"ready\":true}}")?;
    out.flush()?;
    for msg in updates {
        let msg = msg?;
        let Ok((uri, props)) = msg
            .body()
            .deserialize::<(String, HashMap<String, OwnedValue>)>()
        else {
            continue;
        };
        let count = props.get("count").and_then(|v| i64::try_from(v).ok());
        let visible = props
            .get("count-visible")
            .and_then(|v| bool::try_from(v).ok());
        let line = serde_json::json!({ "app_uri": uri, "count": count, "count_visible": visible });
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}
