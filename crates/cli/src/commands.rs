//! Runs each subcommand on the engine. One-shot commands open the engine on
//! the data directory, bring the state up to date with one sweep where the
//! account allows it, answer, and close; `watch` keeps it running.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenlight_core::blynk::{BlynkHandle, BlynkTracker, TrackerConfig};
use greenlight_core::control;
use greenlight_core::policy;
use greenlight_core::rainmaker::rest::RetryPolicy;
use greenlight_core::setup::{self, ErrorClass, NewAccount, NewBroker, NewCloud};
use greenlight_core::{
    now_ms, secret_keys, AccountState, ApprovalResult, Engine, EngineConfig, EngineHandle, Event,
    HistoryFilter, Job, JobState, KeyringSecretStore, NodeRef, SecretError, SecretStore,
};
use serde_json::json;

use crate::args::{
    AccountAdd, AccountCmd, ApproveArgs, Cli, Command, HistoryArgs, NotificationsCmd, PolicyCmd,
    ResultFilter, TlsArgs,
};
use crate::output::{self, node_label};
use crate::Failure;

type Res<T = ()> = Result<T, Failure>;

/// The data directory: `--data-dir`, or the platform's (shared with the app).
pub fn data_dir(arg: Option<PathBuf>) -> Res<PathBuf> {
    if let Some(d) = arg {
        return Ok(d);
    }
    setup::default_data_dir().ok_or_else(|| {
        Failure::Failed("no home directory to keep Greenlight's data in; pass --data-dir".into())
    })
}

/// A secret store that only says the keychain is unreachable: commands that
/// need no secret still work, the others report "log in" (exit 3).
pub(crate) struct NoKeychain(pub(crate) String);

impl SecretStore for NoKeychain {
    fn get(&self, _: &str, _: &str) -> Result<Option<String>, SecretError> {
        Err(SecretError::NoKeychain(self.0.clone()))
    }
    fn set(&self, _: &str, _: &str, _: &str) -> Result<(), SecretError> {
        Err(SecretError::NoKeychain(self.0.clone()))
    }
    fn delete(&self, _: &str, _: &str) -> Result<(), SecretError> {
        Err(SecretError::NoKeychain(self.0.clone()))
    }
}

pub(crate) fn keychain() -> Result<Arc<dyn SecretStore>, SecretError> {
    KeyringSecretStore::open().map(|s| Arc::new(s) as Arc<dyn SecretStore>)
}

pub(crate) fn keychain_failure(e: SecretError) -> Failure {
    Failure::Auth(format!(
        "{e}. Greenlight keeps passwords only in the OS keychain (the Secret Service on Linux, e.g. gnome-keyring) and never in a file; start one and try again"
    ))
}

pub(crate) fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "someone".into());
    format!("{user} (cli)")
}

/// The ownership of the data directory, while this process runs its engine.
static OWNERSHIP: std::sync::Mutex<Option<control::Ownership>> = std::sync::Mutex::new(None);

/// The configuration of the engine this process runs (as the owner): what
/// `watch` opens the Blynk tracker beside (same directory, keychain, actor).
static OWNED_CONFIG: std::sync::Mutex<Option<EngineConfig>> = std::sync::Mutex::new(None);

/// The engine of this data directory: the one its owner runs (the daemon
/// or the app), over the control socket, or — when nobody runs one — an
/// engine of this process's own, which then owns the directory (and, for
/// `watch`, serves it to every other command and the app).
pub(crate) async fn open_engine(cli: &Cli) -> Res<EngineHandle> {
    let dir = data_dir(cli.data_dir.clone())?;
    let secrets: Arc<dyn SecretStore> =
        keychain().unwrap_or_else(|e| Arc::new(NoKeychain(e.to_string())));
    let daemon = matches!(cli.command, Command::Watch);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = false;
    let own = loop {
        let as_kind = if daemon {
            control::ClientKind::Watch
        } else {
            control::ClientKind::Command
        };
        if let Some(remote) = control::connect_as(&dir, secrets.clone(), as_kind).await? {
            return Ok(remote);
        }
        let kind = if daemon { "daemon" } else { "command" };
        if let Some(own) = control::claim(&dir, kind, daemon)? {
            break own;
        }
        // Owned by a process that does not serve (another one-shot
        // command, or an owner still starting): wait for it.
        if Instant::now() > deadline {
            let who = control::owner(&dir)
                .map(|o| format!("{} (pid {})", o.kind, o.pid))
                .unwrap_or_else(|| "another process".into());
            return Err(Failure::Failed(format!(
                "{who} has been using {} for over a minute; try again when it is done",
                dir.display()
            )));
        }
        if !said && !cli.json {
            said = true;
            if let Some(o) = control::owner(&dir) {
                eprintln!(
                    "greenlight: waiting for the {} (pid {}) using {}…",
                    o.kind,
                    o.pid,
                    dir.display()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut cfg = EngineConfig::new(dir, secrets, &actor());
    if !daemon {
        // A one-shot command asks the nodes it needs itself (check_nodes):
        // a first look at every node would ask them all again.
        cfg.first_look = false;
        // A person is waiting for a one-shot command: a cloud that cannot
        // be reached is said in seconds, not after the daemon's patient
        // back-off (which `watch` keeps).
        cfg.retry = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
    }
    let kept = cfg.clone();
    let engine = Engine::open(cfg).await?;
    if daemon {
        control::serve(&own, engine.clone())?;
    }
    if let Ok(mut o) = OWNERSHIP.lock() {
        *o = Some(own);
    }
    if let Ok(mut c) = OWNED_CONFIG.lock() {
        *c = Some(kept);
    }
    Ok(engine)
}

/// `greenlight status`: who owns the data directory.
async fn status(cli: &Cli) -> Res {
    let dir = data_dir(cli.data_dir.clone())?;
    let owner = control::owner(&dir);
    if cli.json {
        output::json(&json!({ "data_dir": dir, "owner": owner }))?;
        return Ok(());
    }
    println!("{}", owner_sentence(&dir, owner.as_ref()));
    Ok(())
}

/// Who runs the engine for `dir`, in one sentence (`status` and
/// `service status` say it the same way).
pub(crate) fn owner_sentence(dir: &std::path::Path, owner: Option<&control::Owner>) -> String {
    match owner {
        Some(o) => {
            let who = match o.kind.as_str() {
                "daemon" => "the greenlight daemon (greenlight watch)".to_string(),
                "app" => "the Greenlight app".to_string(),
                other => format!("a greenlight {other}"),
            };
            format!(
                "{} is run by {who}, pid {}, since {} ({}){}.",
                dir.display(),
                o.pid,
                output::ago(o.since, now_ms()),
                o.version,
                if o.serves {
                    "; commands talk to it"
                } else {
                    ""
                }
            )
        }
        None => format!(
            "Nobody runs the engine for {}: each command runs its own while it works. `greenlight watch` keeps one running.",
            dir.display()
        ),
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Res {
    match &cli.command {
        Command::Demo(a) => crate::demo::run(a, cli.json).await,
        Command::Account(cmd) => account(&cli, cmd).await,
        Command::Nodes => nodes(&cli).await,
        Command::Pending(a) => pending(&cli, a.check).await,
        Command::Approve(a) if a.staged => crate::rollout::approve_staged(&cli, a).await,
        Command::Approve(a) => approve(&cli, a).await,
        Command::Rollout(cmd) => crate::rollout::rollout(&cli, cmd).await,
        Command::Snooze(a) => {
            let until = now_ms() + parse_duration(&a.duration)?.as_millis() as i64;
            let e = open_engine(&cli).await?;
            // Skip and snooze act on the update offered now.
            refresh(&cli, &e).await;
            check_nodes(&e, false).await?;
            let id = resolve(&e, &a.node).await?;
            e.snooze(&id, Some(until)).await?;
            say(
                &cli,
                json!({"account": id.account, "node_id": id.node_id, "snoozed_until": until}),
                &format!("{}: reminded again in {}", a.node, a.duration),
            );
            e.shutdown().await;
            Ok(())
        }
        Command::Skip(a) => {
            let e = open_engine(&cli).await?;
            // Skip and snooze act on the update offered now.
            refresh(&cli, &e).await;
            check_nodes(&e, false).await?;
            let id = resolve(&e, &a.node).await?;
            e.skip(&id).await?;
            say(
                &cli,
                json!({"account": id.account, "node_id": id.node_id, "skipped": true}),
                &format!(
                    "{}: this version is skipped; a newer one will show again",
                    a.node
                ),
            );
            e.shutdown().await;
            Ok(())
        }
        Command::Jobs => jobs(&cli).await,
        Command::History(a) => history(&cli, a).await,
        Command::Policy(p) => policy(&cli, p).await,
        Command::Notifications(n) => notifications(&cli, *n).await,
        Command::Watch => watch(&cli).await,
        Command::Status => status(&cli).await,
        Command::Service(s) => crate::service::run(&cli, s),
        Command::Blynk(b) => crate::blynk::run(&cli, b).await,
    }
}

fn say(cli: &Cli, j: serde_json::Value, human: &str) {
    if cli.json {
        let _ = output::json(&j);
    } else {
        println!("{human}");
    }
}

/// Node id from an id or a (case-insensitive, unique) name.
/// A device as the user named it: a node id, a device name, or either
/// prefixed with its account (`ACCOUNT/NODE`) when the same id or name is
/// in more than one account. Ambiguity is refused with the forms to use,
/// never guessed.
pub(crate) async fn resolve(e: &EngineHandle, what: &str) -> Res<NodeRef> {
    let (account, name) = match what.split_once('/') {
        Some((a, n)) if !a.is_empty() && !n.is_empty() => (Some(a), n),
        _ => (None, what),
    };
    let matches = |nodes: &[greenlight_core::Node], by_name: bool| -> Vec<NodeRef> {
        nodes
            .iter()
            .filter(|n| account.is_none_or(|a| a == n.account))
            .filter(|n| {
                if by_name {
                    n.name
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case(name))
                } else {
                    n.node_id == name
                }
            })
            .map(|n| NodeRef::new(&n.account, &n.node_id))
            .collect()
    };
    let mut nodes = e.nodes().await?;
    if matches(&nodes, false).is_empty() && matches(&nodes, true).is_empty() {
        // A one-shot run knows only what it remembers: ask the accounts.
        let _ = tokio::time::timeout(Duration::from_secs(30), e.refresh()).await;
        nodes = e.nodes().await?;
    }
    let mut hits = matches(&nodes, false);
    if hits.is_empty() {
        hits = matches(&nodes, true);
    }
    match hits.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure::Usage(format!(
            "no device called {what:?}; `greenlight nodes` lists them"
        ))),
        many => Err(Failure::Usage(format!(
            "{} devices match {what:?}; name one as ACCOUNT/NODE: {}",
            many.len(),
            many.iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub(crate) fn parse_duration(s: &str) -> Res<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| Failure::Usage(format!("{s:?} is not a duration like 30m, 12h, 1d or 1w")))?;
    let secs = match unit.trim() {
        "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        "d" | "" => n * 86400,
        "w" => n * 7 * 86400,
        _ => {
            return Err(Failure::Usage(format!(
                "{s:?} is not a duration like 30m, 12h, 1d or 1w"
            )))
        }
    };
    Ok(Duration::from_secs(secs))
}

fn parse_hhmm(s: &str) -> Res<u16> {
    policy::parse_hhmm(s).map_err(|e| Failure::Usage(e.plain()))
}

/// Brings the state up to date (one sweep); a failure is reported, not fatal,
/// so the user still sees what is known and how old it is.
pub(crate) async fn refresh(cli: &Cli, e: &EngineHandle) {
    match tokio::time::timeout(Duration::from_secs(45), e.refresh()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            if !cli.json {
                eprintln!(
                    "greenlight: could not refresh from the cloud: {}",
                    err.plain()
                );
            }
        }
        Err(_) => {
            if !cli.json {
                eprintln!(
                    "greenlight: the cloud did not answer within 45 s; showing what is known"
                );
            }
        }
    }
}

/// Exit 3 when an account needs a login; tells about MQTT-only freshness.
pub(crate) async fn account_notes(cli: &Cli, e: &EngineHandle) -> Res<Vec<serde_json::Value>> {
    let mut notes = vec![];
    let mut needs_login = vec![];
    let nodes = e.nodes().await?;
    for (cfg, state) in e.accounts().await? {
        if let AccountState::NeedsLogin { reason } = &state {
            needs_login.push(format!(
                "account {}: {reason} — run `greenlight account add` again",
                cfg.name
            ));
        }
        if cfg.rest.is_none() {
            notes.push(json!({"account": cfg.name, "note": "MQTT-only: data is what the daemon last heard; run `greenlight watch` to keep it live"}));
            if !cli.json {
                eprintln!("note: account {} is MQTT-only; without `greenlight watch` running, data is as of the last message heard (see LAST SEEN)", cfg.name);
            }
            // Devices announce themselves once, at boot, not retained: an
            // account added beside running devices hears of each only at
            // its next report (docs/rainmaker.md).
            if !nodes.iter().any(|n| n.account == cfg.name) {
                notes.push(json!({"account": cfg.name, "note": "no device has reported on this broker yet; devices announce themselves when they start"}));
                if !cli.json {
                    eprintln!("note: no device has reported on {}'s broker yet: devices announce themselves when they start, so each shows up at its next report (restart one to see it now)", cfg.name);
                }
            }
        }
    }
    if !needs_login.is_empty() {
        return Err(Failure::Auth(needs_login.join("\n")));
    }
    Ok(notes)
}

async fn account(cli: &Cli, cmd: &AccountCmd) -> Res {
    match cmd {
        AccountCmd::List => {
            let e = open_engine(cli).await?;
            let accounts = e.accounts().await?;
            if cli.json {
                let v: Vec<_> = accounts.iter().map(|(c, s)| json!({"name": c.name, "rest": c.rest, "mqtt": c.mqtt, "state": s})).collect();
                output::json(&v)?;
            } else if accounts.is_empty() {
                println!("No accounts yet. Add one with `greenlight account add rainmaker --name home --user you@example.com`, or try `greenlight demo`.");
            } else {
                let rows: Vec<Vec<String>> = accounts
                    .iter()
                    .map(|(c, s)| {
                        vec![
                            c.name.clone(),
                            c.rest
                                .as_ref()
                                .map(|r| format!("{} ({})", r.base_url, r.user))
                                .unwrap_or_else(|| "-".into()),
                            c.mqtt
                                .as_ref()
                                .map(|m| m.url.clone())
                                .unwrap_or_else(|| "-".into()),
                            serde_json::to_value(s)
                                .ok()
                                .and_then(|v| v["state"].as_str().map(str::to_string))
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "CLOUD", "MQTT", "STATE"], &rows);
            }
            e.shutdown().await;
            Ok(())
        }
        AccountCmd::Remove { name } => {
            let e = open_engine(cli).await?;
            e.remove_account(name).await?;
            if let Ok(s) = keychain() {
                for k in [
                    secret_keys::PASSWORD,
                    secret_keys::REFRESH_TOKEN,
                    secret_keys::MQTT_PASSWORD,
                ] {
                    let _ = s.delete(name, k);
                }
            }
            say(
                cli,
                json!({"removed": name}),
                &format!("Removed account {name} and its keychain entries (its history stays)."),
            );
            e.shutdown().await;
            Ok(())
        }
        AccountCmd::Add(kind) => add_account(cli, kind).await,
    }
}

pub(crate) fn read_password(from_stdin: bool, prompt: &str) -> Res<String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        dialoguer::Password::new()
            .with_prompt(prompt)
            .interact()
            .map_err(|e| Failure::Failed(e.to_string()))?
    } else {
        return Err(Failure::Usage(
            "no terminal to ask for the password: pass it on standard input with --password-stdin"
                .into(),
        ));
    };
    if pw.is_empty() {
        return Err(Failure::Usage("the password is empty".into()));
    }
    Ok(pw)
}

/// Decides how to trust an `https://` server: the system's roots when they
/// vouch for it; otherwise only the fingerprint the user accepted — given
/// with `--trust-fingerprint`, or shown and confirmed at a terminal.
pub(crate) async fn trust(url: &str, given: Option<&str>) -> Res<Option<String>> {
    use greenlight_core::tls;
    let seen = match tls::decide_trust(url, given).await {
        Ok(tls::Trust::System) => return Ok(None),
        Ok(tls::Trust::Pinned(fp)) => return Ok(Some(fp)),
        Ok(tls::Trust::Unknown { fingerprint }) => fingerprint,
        Err(e) => {
            return Err(Failure::Failed(format!(
                "{}; the account was not added",
                e.plain()
            )))
        }
    };
    confirm_certificate(url, &seen)?;
    Ok(Some(seen))
}

/// The broker side of a new account, from the command line.
fn new_broker(
    url: &str,
    tls: &TlsArgs,
    username: Option<String>,
    password: Option<String>,
    allow_plaintext_password: bool,
) -> NewBroker {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
    NewBroker {
        url: url.to_string(),
        username,
        password,
        ca_file: path(&tls.ca),
        client_cert: path(&tls.cert),
        client_key: path(&tls.key),
        allow_plaintext_password,
    }
}

/// Adds an account through core's one flow ([`setup::add_account`]),
/// through the owner of the data directory when one runs. The CLI's part is
/// asking: the password, and whether to trust an unknown certificate.
async fn add_account(cli: &Cli, kind: &AccountAdd) -> Res {
    let mut new = match kind {
        AccountAdd::Rainmaker(a) => {
            let password = read_password(
                a.password_stdin,
                &format!("RainMaker password for {}", a.user),
            )?;
            NewAccount {
                name: a.name.clone(),
                cloud: Some(NewCloud {
                    url: a.url.clone(),
                    user: a.user.clone(),
                    password,
                    trust_fingerprint: a.trust_fingerprint.clone(),
                }),
                broker: a
                    .mqtt_url
                    .as_ref()
                    .map(|u| new_broker(u, &a.tls, None, None, false)),
            }
        }
        AccountAdd::Mqtt(a) => {
            let password = if a.username.is_some() {
                // Said before the password is asked for, not after.
                setup::check_broker_password(&a.mqtt_url, a.allow_plaintext_password).map_err(
                    |e| Failure::Usage(format!("{} (--allow-plaintext-password)", e.plain())),
                )?;
                Some(read_password(a.password_stdin, "Broker password")?)
            } else {
                None
            };
            NewAccount {
                name: a.name.clone(),
                cloud: None,
                broker: Some(new_broker(
                    &a.mqtt_url,
                    &a.tls,
                    a.username.clone(),
                    password,
                    a.allow_plaintext_password,
                )),
            }
        }
    };
    let name = new.name.clone();
    let e = open_engine(cli).await?;
    let added = match setup::add_account(&e, new.clone()).await {
        Err(greenlight_core::Error::UntrustedCertificate { url, fingerprint }) => {
            match confirm_certificate(&url, &fingerprint) {
                Ok(()) => {
                    if let Some(c) = new.cloud.as_mut() {
                        c.trust_fingerprint = Some(fingerprint);
                    }
                    setup::add_account(&e, new).await
                }
                Err(f) => {
                    e.shutdown().await;
                    return Err(f);
                }
            }
        }
        other => other,
    };
    let cfg = match added {
        Ok(cfg) => cfg,
        Err(err) => {
            e.shutdown().await;
            return Err(match err.class() {
                ErrorClass::Keychain => match err {
                    greenlight_core::Error::Secret(s) => keychain_failure(s),
                    other => Failure::Auth(other.plain()),
                },
                ErrorClass::Auth => Failure::Auth(format!(
                    "could not log in to {}: {}",
                    name,
                    match &err {
                        greenlight_core::Error::NeedsLogin { reason, .. } => reason.clone(),
                        other => other.plain(),
                    }
                )),
                _ => err.into(),
            });
        }
    };
    if cfg.rest.is_some() {
        refresh(cli, &e).await;
    }
    let n = e
        .nodes()
        .await?
        .iter()
        .filter(|n| n.account == cfg.name)
        .count();
    say(
        cli,
        json!({"added": cfg.name, "nodes": n}),
        &format!(
            "Added account {} ({n} devices). The password is in the OS keychain.",
            cfg.name
        ),
    );
    e.shutdown().await;
    Ok(())
}

/// Shows an untrusted certificate's fingerprint and asks at a terminal
/// whether to trust it; without a terminal, says how to pass it.
fn confirm_certificate(url: &str, seen: &str) -> Res<()> {
    use greenlight_core::tls;
    let question = format!("{url} has a certificate your system does not trust (self-signed?).\nSHA-256 fingerprint: {}\nTrust this certificate for this account?", tls::pretty(seen));
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let yes = dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact()
            .map_err(|e| Failure::Failed(e.to_string()))?;
        if yes {
            return Ok(());
        }
        return Err(Failure::Failed(
            "not trusted; the account was not added".into(),
        ));
    }
    Err(Failure::Failed(format!(
        "{url} has a certificate your system does not trust (self-signed?). Its SHA-256 fingerprint is {}. If that is your server, run again with --trust-fingerprint {seen}",
        tls::pretty(seen)
    )))
}

async fn nodes(cli: &Cli) -> Res {
    let e = open_engine(cli).await?;
    refresh(cli, &e).await;
    let notes = account_notes(cli, &e).await;
    let nodes = e.nodes().await?;
    if cli.json {
        output::json(&json!({"nodes": nodes, "notes": notes.as_ref().ok()}))?;
    } else if nodes.is_empty() {
        println!("No devices yet. Add an account with `greenlight account add`, or try `greenlight demo`.");
    } else {
        output::table(
            &[
                "DEVICE",
                "NODE ID",
                "MODEL",
                "FIRMWARE",
                "STATUS",
                "LAST SEEN",
                "UPDATES",
                "ACCOUNT",
            ],
            &output::node_rows(&nodes, now_ms()),
        );
    }
    e.shutdown().await;
    notes.map(|_| ())
}

/// Asks the cloud about user-approval jobs for the online nodes that show
/// no pending update yet (with `all`, every online node). A one-shot command
/// does not share the daemon's memory of earlier checks, so it asks once
/// itself — one call per node, one after the other, never in parallel.
pub(crate) async fn check_nodes(e: &EngineHandle, all: bool) -> Res<bool> {
    let known: Vec<String> = e.pending().await?.into_iter().map(|p| p.node_id).collect();
    let ids: Vec<String> = e
        .nodes()
        .await?
        .into_iter()
        // With --check every known node is asked, online or not as far as
        // this run knows (an MQTT-only account hears nothing until it asks).
        .filter(|n| all || (n.is_online() && !known.contains(&n.node_id)))
        .map(|n| n.node_id)
        .collect();
    for id in &ids {
        if let Err(err) = tokio::time::timeout(Duration::from_secs(15), e.check_now(id))
            .await
            .unwrap_or(Ok(()))
        {
            eprintln!("greenlight: check of {id} failed: {}", err.plain());
        }
    }
    Ok(!ids.is_empty())
}

async fn pending(cli: &Cli, check: bool) -> Res {
    let e = open_engine(cli).await?;
    refresh(cli, &e).await;
    if check_nodes(&e, check).await? && check {
        // Nodes answer `Operation=check` over MQTT a moment later.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let notes = account_notes(cli, &e).await;
    let p = e.pending().await?;
    if cli.json {
        output::json(&json!({"pending": p}))?;
    } else if p.is_empty() {
        println!("Nothing is waiting for approval.");
    } else {
        output::table(
            &[
                "DEVICE",
                "VERSION",
                "KIND",
                "SIZE",
                "STATUS",
                "RELEASE NOTE",
            ],
            &output::pending_rows(&p, now_ms()),
        );
        for u in p.iter().filter(|u| u.warning.is_some()) {
            println!(
                "\n{}: {}",
                output::node_label(u.node_name.as_deref(), &u.node_id),
                u.warning.as_deref().unwrap_or_default()
            );
        }
        println!("\nApprove with `greenlight approve <device>` or `greenlight approve --all`.");
    }
    e.shutdown().await;
    notes.map(|_| ())
}

async fn approve(cli: &Cli, a: &ApproveArgs) -> Res {
    let at = match &a.at {
        Some(t) => Some(next_local_time(parse_hhmm(t)?)),
        None => None,
    };
    let e = open_engine(cli).await?;
    refresh(cli, &e).await;
    account_notes(cli, &e).await?;
    check_nodes(&e, false).await?;
    let mut events = e.subscribe();
    let mut outcomes = match (a.all, at) {
        (true, None) => e.approve_all().await?,
        (true, Some(at)) => {
            let ids: Vec<NodeRef> = e
                .pending()
                .await?
                .into_iter()
                .filter(|p| !p.is_snoozed(now_ms()))
                .map(|p| NodeRef::new(&p.account, &p.node_id))
                .collect();
            e.approve_at(&ids, at).await?
        }
        (false, _) => {
            let mut ids = vec![];
            for n in &a.nodes {
                ids.push(resolve(&e, n).await?);
            }
            match at {
                Some(at) => e.approve_at(&ids, at).await?,
                None => e.approve(&ids).await?,
            }
        }
    };
    if a.when_online {
        for o in outcomes.iter_mut() {
            if matches!(o.result, ApprovalResult::Offline) {
                *o = e
                    .install_when_online(NodeRef::new(&o.account, &o.node_id))
                    .await?;
            }
        }
    }
    let names = names_of(&e).await?;
    if !cli.json {
        for o in &outcomes {
            println!("{}", output::outcome_words(o, &names(&o.node_id)));
        }
    }
    let followed: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match &o.result {
            ApprovalResult::Sent { job } => Some(job.id),
            _ => None,
        })
        .collect();
    let finals = if a.no_wait || followed.is_empty() {
        vec![]
    } else {
        follow(
            cli.json,
            &e,
            &mut events,
            &followed,
            &names,
            Duration::from_secs(a.start_timeout),
        )
        .await?
    };
    // A job still waiting for its device is not a failure: the approval was
    // accepted and is delivered when the device is back.
    let failed = outcomes.iter().any(output::outcome_failed)
        || finals
            .iter()
            .any(|j| j.state.is_terminal() && !matches!(j.state, JobState::Success))
        || finals.iter().any(|j| matches!(j.state, JobState::Stuck));
    if cli.json {
        output::json(&json!({"outcomes": outcomes, "jobs": finals}))?;
    }
    e.shutdown().await;
    if failed {
        Err(Failure::Failed(String::new()))
    } else {
        Ok(())
    }
}

pub async fn names_of(e: &EngineHandle) -> Res<impl Fn(&str) -> String> {
    let map: HashMap<String, String> = e
        .nodes()
        .await?
        .into_iter()
        .map(|n| (n.node_id.clone(), node_label(n.name.as_deref(), &n.node_id)))
        .collect();
    Ok(move |id: &str| map.get(id).cloned().unwrap_or_else(|| id.to_string()))
}

/// Has the device taken the job in hand (anything past "sent" other than
/// its own request for approval)?
fn device_started(s: &JobState) -> bool {
    !matches!(
        s,
        JobState::Queued { .. }
            | JobState::Requested
            | JobState::Sent
            | JobState::NotConfirmed { .. }
            | JobState::Delayed {
                delay: greenlight_core::DelayReason::WaitingForApproval
            }
    )
}

/// Follows jobs to a terminal state (or stuck), showing progress. A job the
/// device has not started within `start_timeout` is no longer waited for:
/// it is returned as it is (still approved, waiting for its device).
pub async fn follow(
    json_out: bool,
    e: &EngineHandle,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    ids: &[i64],
    names: &dyn Fn(&str) -> String,
    start_timeout: Duration,
) -> Res<Vec<Job>> {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    let show = !json_out && std::io::stderr().is_terminal();
    let mp = MultiProgress::with_draw_target(if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>20} [{bar:24}] {pos:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut bars: HashMap<i64, ProgressBar> = HashMap::new();
    let mut done: HashMap<i64, Job> = HashMap::new();
    for j in e.jobs().await?.into_iter().filter(|j| ids.contains(&j.id)) {
        let pb = mp.add(
            ProgressBar::new(100)
                .with_style(style.clone())
                .with_prefix(names(&j.node_id)),
        );
        pb.set_message(output::state_words(&j.state));
        bars.insert(j.id, pb);
    }
    if !show && !json_out {
        println!(
            "Following {} job(s); Ctrl-C leaves them running (see `greenlight jobs`).",
            ids.len()
        );
    }
    let mut stuck_tick = tokio::time::interval(Duration::from_secs(5));
    let give_up_at = tokio::time::Instant::now() + start_timeout;
    let mut started: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut latest: HashMap<i64, Job> = e
        .jobs()
        .await?
        .into_iter()
        .filter(|j| ids.contains(&j.id))
        .map(|j| (j.id, j))
        .collect();
    loop {
        if ids.iter().all(|id| done.contains_key(id)) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(give_up_at), if ids.iter().any(|id| !done.contains_key(id) && !started.contains(id)) => {
                // Approved, but the device has not acted on it: say so and
                // leave it to whichever Greenlight is watching.
                for id in ids {
                    if done.contains_key(id) || started.contains(id) {
                        continue;
                    }
                    let Some(j) = latest.get(id).cloned() else { continue };
                    if let Some(pb) = bars.get(id) {
                        pb.abandon_with_message(output::state_words(&j.state));
                    }
                    done.insert(*id, j);
                }
            }
            ev = events.recv() => match ev {
                Ok(Event::JobChanged { job }) if ids.contains(&job.id) => {
                    if device_started(&job.state) {
                        started.insert(job.id);
                    }
                    latest.insert(job.id, job.clone());
                    if let Some(pb) = bars.get(&job.id) {
                        if let Some(p) = job.percent { pb.set_position(p as u64); }
                        let text = job.progress_text.clone().unwrap_or_default();
                        if matches!(job.state, JobState::Success) {
                            pb.finish_with_message(output::state_words(&job.state));
                        } else if job.state.is_terminal() {
                            // Keep the bar where the device left it: no fake 100 %.
                            pb.abandon_with_message(output::state_words(&job.state));
                        } else {
                            pb.set_message(format!("{} {text}", output::state_words(&job.state)));
                        }
                    }
                    if !show && !json_out {
                        println!("{}: {}{}", names(&job.node_id), output::state_words(&job.state), job.progress_text.as_deref().filter(|_| !job.state.is_terminal()).map(|t| format!(" ({t})")).unwrap_or_default());
                    }
                    if job.state.is_terminal() || matches!(job.state, JobState::Stuck) {
                        done.insert(job.id, job);
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    for j in e.history(HistoryFilter { limit: Some(500), ..Default::default() }).await? {
                        if ids.contains(&j.id) && (j.state.is_terminal() || matches!(j.state, JobState::Stuck)) { done.insert(j.id, j); }
                    }
                }
                Err(_) => break,
            },
            _ = stuck_tick.tick() => {
                // Jobs may have ended while we were not listening.
                for j in e.history(HistoryFilter { limit: Some(500), ..Default::default() }).await? {
                    if ids.contains(&j.id) && j.state.is_terminal() { done.insert(j.id, j); }
                }
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("greenlight: stopped following; the jobs go on and `greenlight jobs` shows them");
                break;
            }
        }
    }
    if !json_out {
        for id in ids {
            if let Some(j) = done.get(id) {
                println!("{}: {}", names(&j.node_id), output::state_words(&j.state));
            }
        }
        let waiting: Vec<String> = ids
            .iter()
            .filter_map(|id| done.get(id))
            .filter(|j| !j.state.is_terminal() && !matches!(j.state, JobState::Stuck))
            .map(|j| names(&j.node_id))
            .collect();
        if !waiting.is_empty() {
            println!(
                "\nStill waiting for {}: approved, not started by the device yet. `greenlight watch` or the app delivers it when the device is back and asks again; `greenlight jobs` shows where it is.",
                waiting.join(", ")
            );
        }
    }
    Ok(ids.iter().filter_map(|i| done.remove(i)).collect())
}

async fn jobs(cli: &Cli) -> Res {
    let e = open_engine(cli).await?;
    refresh(cli, &e).await;
    let notes = account_notes(cli, &e).await;
    // Running jobs plus the ones that ended in the last day.
    let now = now_ms();
    let mut jobs = e.jobs().await?;
    for j in e
        .history(HistoryFilter {
            limit: Some(200),
            ..Default::default()
        })
        .await?
    {
        if j.state.is_terminal()
            && j.finished_at.is_some_and(|f| now - f < 86_400_000)
            && !jobs.iter().any(|x| x.id == j.id)
        {
            jobs.push(j);
        }
    }
    jobs.sort_by_key(|j| std::cmp::Reverse(j.created_at));
    if cli.json {
        output::json(&json!({"jobs": jobs}))?;
    } else if jobs.is_empty() {
        println!("No update jobs in the last day.");
    } else {
        let names = names_of(&e).await?;
        output::table(
            &["JOB", "DEVICE", "VERSION", "STATE", "TOOK", "APPROVED"],
            &output::job_rows(&jobs, &names, now),
        );
    }
    e.shutdown().await;
    notes.map(|_| ())
}

fn result_matches(j: &Job, r: ResultFilter) -> bool {
    match r {
        ResultFilter::Success => matches!(j.state, JobState::Success),
        ResultFilter::Failure => {
            j.state.is_terminal() && !matches!(j.state, JobState::Success)
                || matches!(j.state, JobState::Stuck)
        }
        ResultFilter::Running => !j.state.is_terminal(),
    }
}

async fn history(cli: &Cli, a: &HistoryArgs) -> Res {
    let e = open_engine(cli).await?;
    // Only for device names: the engine does not keep nodes across runs yet.
    let _ = tokio::time::timeout(Duration::from_secs(10), e.refresh()).await;
    let node = match &a.device {
        Some(d) => Some(resolve(&e, d).await?),
        None => None,
    };
    let mut jobs = e
        .history(HistoryFilter {
            account: node.as_ref().and_then(|n| n.account.clone()),
            node_id: node.map(|n| n.node_id),
            limit: Some(10_000),
        })
        .await?;
    if let Some(r) = a.result {
        jobs.retain(|j| result_matches(j, r));
    }
    let names = names_of(&e).await?;
    if a.csv {
        print!("{}", greenlight_core::export::history_csv(&jobs, &names));
    } else if cli.json {
        output::json(&json!({"history": jobs}))?;
    } else if jobs.is_empty() {
        println!("No approvals recorded yet.");
    } else {
        output::table(
            &["JOB", "DEVICE", "VERSION", "RESULT", "TOOK", "APPROVED"],
            &output::job_rows(&jobs, &names, now_ms()),
        );
    }
    e.shutdown().await;
    Ok(())
}

/// `greenlight notifications pause|resume|status`: one setting for the app
/// and the daemon, kept in the data directory (through the owner, when one
/// runs: its notifier and the app's tray follow at once).
async fn notifications(cli: &Cli, n: NotificationsCmd) -> Res {
    let e = open_engine(cli).await?;
    let paused = match n {
        NotificationsCmd::Pause => e.set_notifications_paused(true).await.map(|_| true),
        NotificationsCmd::Resume => e.set_notifications_paused(false).await.map(|_| false),
        NotificationsCmd::Status => e.notifications_paused().await,
    };
    e.shutdown().await;
    let paused = paused?;
    say(
        cli,
        json!({ "paused": paused }),
        if paused {
            "Notifications are paused: neither the app nor `greenlight watch` shows any until `greenlight notifications resume` (the inbox and `greenlight pending` still list what waits)."
        } else {
            "Notifications are on (outside quiet hours)."
        },
    );
    Ok(())
}

async fn policy(cli: &Cli, p: &PolicyCmd) -> Res {
    let e = open_engine(cli).await?;
    match p {
        PolicyCmd::Show => {
            let p = e.policies().await?;
            // Only for device names: the engine does not keep nodes across runs yet.
            let _ = tokio::time::timeout(Duration::from_secs(10), e.refresh()).await;
            if cli.json {
                output::json(&p)?;
            } else {
                let names = names_of(&e).await?;
                let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
                match &p.quiet_hours {
                    Some(q) => println!(
                        "Quiet hours: {}-{} (UTC{:+03}:{:02})",
                        hhmm(q.start_minute),
                        hhmm(q.end_minute),
                        q.utc_offset_minutes / 60,
                        (q.utc_offset_minutes % 60).abs()
                    ),
                    None => println!("Quiet hours: off"),
                }
                let list =
                    |v: &[greenlight_core::NodePolicy],
                     f: &dyn Fn(&greenlight_core::NodePolicy) -> String| {
                        if v.is_empty() {
                            "none".to_string()
                        } else {
                            v.iter().map(f).collect::<Vec<_>>().join(", ")
                        }
                    };
                println!(
                    "Auto-approve: {}",
                    list(&p.auto_approve, &|n| names(&n.node_id))
                );
                println!(
                    "Skipped versions: {}",
                    list(&p.skipped, &|n| format!(
                        "{} {}",
                        names(&n.node_id),
                        n.value.as_deref().unwrap_or("?")
                    ))
                );
                let now = now_ms();
                println!(
                    "Snoozed: {}",
                    list(&p.snoozed, &|n| format!(
                        "{} ({})",
                        names(&n.node_id),
                        output::in_words(
                            n.value
                                .as_deref()
                                .and_then(|v| v.parse::<i64>().ok())
                                .unwrap_or(now)
                                - now
                        )
                    ))
                );
            }
        }
        PolicyCmd::AutoApprove { node, state } => {
            let id = resolve(&e, node).await?;
            let on = state == "on";
            e.set_auto_approve(&id, on).await?;
            say(
                cli,
                json!({"node_id": id, "auto_approve": on}),
                &format!(
                    "{node}: auto-approve {state}{}",
                    if on {
                        " (failures still notify you)"
                    } else {
                        ""
                    }
                ),
            );
        }
        PolicyCmd::QuietHours { window } => {
            if window == "off" {
                e.set_quiet_hours(None).await?;
                say(cli, json!({"quiet_hours": null}), "Quiet hours off.");
            } else {
                let q = policy::parse_quiet_hours(window, local_offset_minutes())
                    .map_err(|e| Failure::Usage(format!("{}, or off", e.plain())))?;
                let b = window
                    .split_once('-')
                    .map(|(_, b)| b.trim())
                    .unwrap_or_default();
                e.set_quiet_hours(Some(q)).await?;
                say(
                    cli,
                    json!({"quiet_hours": q}),
                    &format!("Quiet hours {window}: approvals made then wait until {b}."),
                );
            }
        }
    }
    e.shutdown().await;
    Ok(())
}

/// The next time the local clock shows `minute` (minutes after midnight).
fn next_local_time(minute: u16) -> i64 {
    let now = now_ms();
    let offset = local_offset_minutes() as i64 * 60_000;
    let day = 86_400_000;
    let local_midnight = (now + offset).div_euclid(day) * day - offset;
    let mut t = local_midnight + minute as i64 * 60_000;
    if t <= now {
        t += day;
    }
    t
}

/// The local UTC offset, from `TZ_OFFSET_MINUTES` or `date +%z` (no tz database crate needed).
pub(crate) fn local_offset_minutes() -> i16 {
    if let Some(m) = std::env::var("TZ_OFFSET_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return m;
    }
    let out = std::process::Command::new("date")
        .arg("+%z")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if out.len() == 5 {
        let sign = if out.starts_with('-') { -1 } else { 1 };
        let h: i16 = out[1..3].parse().unwrap_or(0);
        let m: i16 = out[3..5].parse().unwrap_or(0);
        return sign * (h * 60 + m);
    }
    0
}

async fn watch(cli: &Cli) -> Res {
    let e = open_engine(cli).await?;
    // The owner shows desktop notifications while no app is attached (an
    // attached daemon leaves them to its owner).
    let apps = OWNERSHIP
        .lock()
        .ok()
        .and_then(|o| o.as_ref().map(|o| o.attached_apps()));
    // The owner also follows the Blynk campaigns started from any process
    // (`greenlight blynk start`, the app), on a timer: one poller per data
    // directory (an app attached as a client polls none; a daemon attached
    // to the app leaves it to the app: it has no engine configuration).
    let owned = OWNED_CONFIG.lock().ok().and_then(|c| c.clone());
    // The owner catches up after the machine slept (MQTT sockets dead
    // without a word, sweeps missed); a client's owner runs its own.
    let resume = owned.is_some().then(|| {
        let e = e.clone();
        let say = !cli.json;
        tokio::spawn(
            greenlight_core::resume::ResumeDetector::new().run(move |gap| {
                if say {
                    eprintln!(
                        "greenlight: the computer slept for about {} min; reconnecting and checking for updates",
                        gap.as_secs().div_ceil(60)
                    );
                }
                let e = e.clone();
                tokio::spawn(async move {
                    if let Err(err) = e.resumed().await {
                        tracing::warn!(error = %err, "catching up after a sleep");
                    }
                });
            }),
        )
    });
    let blynk = match owned {
        Some(cfg) => open_blynk(&cfg).await,
        None => None,
    };
    let _notes = apps.map(|apps| {
        crate::notify::spawn(
            e.clone(),
            blynk.as_ref().map(BlynkHandle::subscribe),
            apps,
            crate::notify::desktop(),
        )
    });
    let mut blynk_events = blynk.as_ref().map(BlynkHandle::subscribe);
    let mut campaigns = HashMap::new();
    let mut events = e.subscribe();
    let names = std::sync::Mutex::new(HashMap::<String, String>::new());
    for n in e.nodes().await? {
        if let Ok(mut m) = names.lock() {
            m.insert(n.node_id.clone(), node_label(n.name.as_deref(), &n.node_id));
        }
    }
    let label = |id: &str| {
        names
            .lock()
            .ok()
            .and_then(|m| m.get(id).cloned())
            .unwrap_or_else(|| id.to_string())
    };
    // Listen before announcing: a supervisor may signal as soon as it reads
    // the banner, and an unhandled SIGINT would kill us without a clean stop.
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    if !cli.json {
        eprintln!(
            "greenlight: watching {} account(s); Ctrl-C to stop",
            e.accounts().await?.len()
        );
    }
    loop {
        #[cfg(unix)]
        let stop = async {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        };
        #[cfg(not(unix))]
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        tokio::select! {
            _ = stop => break,
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if let Event::NodeUpdated { node } = &ev {
                        if let Ok(mut m) = names.lock() { m.insert(node.node_id.clone(), node_label(node.name.as_deref(), &node.node_id)); }
                    }
                    if cli.json {
                        output::json_line(&json!({"at": now_ms(), "event": ev}))?;
                    } else if let Some(line) = describe(&ev, &label) {
                        println!("{line}");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("greenlight: {n} events skipped (too many at once)"),
                Err(_) => break,
            },
            ev = crate::notify::next_blynk(&mut blynk_events) => match ev {
                Ok(ev) => {
                    if cli.json {
                        output::json_line(&json!({"at": now_ms(), "blynk_event": ev}))?;
                    } else if let Some(line) = crate::blynk::describe_event(&ev, &mut campaigns) {
                        println!("{line}");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("greenlight: {n} Blynk events skipped (too many at once)"),
                // The tracker stopped on its own; RainMaker is still watched.
                Err(_) => blynk_events = None,
            }
        }
    }
    if let Some(r) = resume {
        r.abort();
    }
    if let Some(b) = &blynk {
        b.shutdown().await;
    }
    e.shutdown().await;
    Ok(())
}

/// The daemon's Blynk tracker, polling on a timer, beside its engine. One
/// that cannot open is said and done without: RainMaker is still watched.
async fn open_blynk(cfg: &EngineConfig) -> Option<BlynkHandle> {
    match BlynkTracker::open_beside(cfg, TrackerConfig::default()).await {
        Ok(h) => {
            tracing::info!("following Blynk campaigns started from any process");
            Some(h)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the Blynk tracker could not start; Blynk campaigns are not followed by this daemon");
            None
        }
    }
}

fn describe(ev: &Event, label: &dyn Fn(&str) -> String) -> Option<String> {
    Some(match ev {
        Event::PendingAdded { pending } => format!(
            "update waiting: {} {} → {}",
            label(&pending.node_id),
            pending.from_version.as_deref().unwrap_or("?"),
            pending.to_version
        ),
        Event::JobChanged { job } => format!(
            "{}: {}{}",
            label(&job.node_id),
            crate::output::state_words(&job.state),
            job.progress_text
                .as_deref()
                .filter(|_| !job.state.is_terminal())
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        ),
        Event::AccountState { account, state } => format!(
            "account {account}: {}",
            serde_json::to_value(state).ok()?["state"]
                .as_str()?
                .replace('_', " ")
        ),
        Event::Approval { outcome } => {
            crate::output::outcome_words(outcome, &label(&outcome.node_id))
        }
        Event::RolloutChanged { rollout } => {
            format!("careful update {}: {}", rollout.id, rollout.headline)
        }
        Event::NotificationsPaused { paused: true } => "notifications paused".into(),
        Event::NotificationsPaused { paused: false } => "notifications resumed".into(),
        Event::NodeUpdated { .. }
        | Event::PendingRemoved { .. }
        | Event::AccountFreshness { .. }
        | Event::QuietHoursChanged { .. } => return None,
    })
}
