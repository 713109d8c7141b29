//! The owner's side: the control socket, one task per client, each request
//! run on the owner's engine handle in a task of its own (a client
//! following a long approval does not hold up its other requests), and
//! every engine event forwarded to every client. A client that says it is
//! the app is counted while it stays connected
//! ([`Ownership::attached_apps`](super::Ownership::attached_apps)).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::{Framed, LinesCodec};

use super::wire::{read_request, Answer, Call, ClientKind, WireError, MAX_LINE};
use super::{Owner, Ownership};
use crate::engine::EngineHandle;
use crate::error::{Error, Result};

/// Listens on the directory's control socket (replacing a stale one) and
/// serves `handle` to every client until the task is aborted.
pub fn serve(own: &Ownership, handle: EngineHandle) -> Result<JoinHandle<()>> {
    let path = own.socket_path()?;
    // Only the owner gets here, so a socket file is a dead owner's.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| Error::Io {
        what: format!("listening on {}", path.display()),
        source: e,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    let owner = Arc::new(own.owner().clone());
    let apps = own.apps.clone();
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(client(stream, handle.clone(), owner.clone(), apps.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }))
}

/// Counts one attached app while it lives (a client that said so).
struct AppAttached(Arc<watch::Sender<usize>>);

impl AppAttached {
    fn new(apps: Arc<watch::Sender<usize>>) -> AppAttached {
        apps.send_modify(|n| *n += 1);
        AppAttached(apps)
    }
}

impl Drop for AppAttached {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

async fn client(
    stream: UnixStream,
    handle: EngineHandle,
    owner: Arc<Owner>,
    apps: Arc<watch::Sender<usize>>,
) {
    let (mut sink, mut lines) =
        Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE)).split();
    let (out, mut outgoing) = mpsc::channel::<String>(1024);
    let writer = tokio::spawn(async move {
        while let Some(line) = outgoing.recv().await {
            if sink.send(line).await.is_err() {
                return;
            }
        }
    });
    let mut events = handle.subscribe();
    let fwd = out.clone();
    let forwarder = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ev) => {
                    let line = json!({ "event": ev }).to_string();
                    // A client that does not read loses events, as a slow
                    // subscriber in the process does; it never stalls others.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = fwd.try_send(line) {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
    let mut app: Option<AppAttached> = None;
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "control socket: unreadable line; closing");
                break;
            }
        };
        // A call this owner does not know (a newer client's) is answered
        // under its id, not left waiting (see `read_request`).
        let env = match read_request(&line, &owner.version) {
            Ok(env) => env,
            Err((id, err)) => {
                let _ = out.send(answer(id, Err(err))).await;
                continue;
            }
        };
        // Said before any other request, and handled in order.
        if let Call::Hello { kind } = env.call {
            if kind == ClientKind::App && app.is_none() {
                app = Some(AppAttached::new(apps.clone()));
            }
            let _ = out.send(answer(env.id, Ok(Value::Null))).await;
            continue;
        }
        let (handle, out, owner) = (handle.clone(), out.clone(), owner.clone());
        tokio::spawn(async move {
            let r = run(&handle, env.call, &owner)
                .await
                .map_err(|e| WireError::from(&e));
            let _ = out.send(answer(env.id, r)).await;
        });
    }
    drop(app);
    forwarder.abort();
    drop(out);
    let _ = writer.await;
}

fn answer(id: u64, r: std::result::Result<Value, WireError>) -> String {
    let a = match r {
        Ok(v) => Answer {
            id,
            ok: Some(v),
            err: None,
        },
        Err(e) => Answer {
            id,
            ok: None,
            err: Some(e),
        },
    };
    serde_json::to_string(&a).unwrap_or_default()
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Protocol(format!("encoding an answer: {e}")))
}

/// Runs one call on the owner's engine.
async fn run(h: &EngineHandle, call: Call, owner: &Owner) -> Result<Value> {
    match call {
        Call::AddAccount(cfg) => to_value(h.add_account(*cfg).await?),
        Call::RemoveAccount(name) => to_value(h.remove_account(&name).await?),
        Call::Accounts => to_value(h.accounts().await?),
        Call::Freshness => to_value(h.freshness().await?),
        Call::Login { account, password } => to_value(h.login(&account, &password).await?),
        Call::Nodes => to_value(h.nodes().await?),
        Call::Pending => to_value(h.pending().await?),
        Call::Jobs => to_value(h.jobs().await?),
        Call::History(f) => to_value(h.history(f).await?),
        Call::JobEvents(id) => to_value(h.job_events(id).await?),
        Call::Audit(limit) => to_value(h.audit(limit).await?),
        Call::Approve(nodes) => to_value(h.approve(nodes).await?),
        Call::ApproveAll => to_value(h.approve_all().await?),
        Call::ApproveAt(nodes, at) => to_value(h.approve_at(nodes, at).await?),
        Call::Policies => to_value(h.policies().await?),
        Call::InstallWhenOnline(n) => to_value(h.install_when_online(n).await?),
        Call::Resend(id) => to_value(h.confirm_resend(id).await?),
        Call::Cancel(id) => to_value(h.cancel(id).await?),
        Call::Snooze(n, until) => to_value(h.snooze(n, until).await?),
        Call::Skip(n) => to_value(h.skip(n).await?),
        Call::AutoApprove(n, on) => to_value(h.set_auto_approve(n, on).await?),
        Call::QuietHours(q) => to_value(h.set_quiet_hours(q).await?),
        Call::NotificationsPaused => to_value(h.notifications_paused().await?),
        Call::SetNotificationsPaused(p) => to_value(h.set_notifications_paused(p).await?),
        // Answered where it is read (it changes the connection).
        Call::Hello { .. } => Ok(Value::Null),
        Call::CheckNow(n) => to_value(h.check_now(n).await?),
        Call::Refresh => to_value(h.refresh().await?),
        Call::StartRollout(plan) => to_value(h.start_rollout(*plan).await?),
        Call::Rollouts => to_value(h.rollouts().await?),
        Call::RolloutAction(id, a) => to_value(h.rollout_action(id, a).await?),
        Call::Owner => to_value(owner),
    }
}
