//! A client's side: an [`EngineHandle`] whose requests go to the owner of
//! the data directory over its control socket. The views use it exactly
//! like a local one; `shutdown` only closes the connection (the owner's
//! engine keeps running). The client says what it is first
//! ([`ClientKind`]; see `wire.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::codec::{Framed, LinesCodec};

use super::wire::{read_owner_line, Call, ClientKind, Envelope, OwnerLine, MAX_LINE, PROTOCOL};
use crate::engine::handle::{Reply, Request};
use crate::engine::{EngineHandle, Mode};
use crate::error::{Error, Result};
use crate::secrets::SecretStore;

type Adapter = Box<dyn FnOnce(Result<Value>) + Send>;
type Waiting = Arc<Mutex<HashMap<u64, Adapter>>>;

/// Connects to the owner of `dir`, if one serves it, as a one-shot command
/// ([`connect_as`] with [`ClientKind::Command`]). `Ok(None)`: nobody
/// listens (no owner, or one that does not serve) — run an engine here.
pub async fn connect(dir: &Path, secrets: Arc<dyn SecretStore>) -> Result<Option<EngineHandle>> {
    connect_as(dir, secrets, ClientKind::Command).await
}

/// Connects to the owner of `dir`, if one serves it, saying what this
/// client is (the owner counts the apps attached). `Ok(None)`: nobody
/// listens — run an engine here.
pub async fn connect_as(
    dir: &Path,
    secrets: Arc<dyn SecretStore>,
    kind: ClientKind,
) -> Result<Option<EngineHandle>> {
    let path = super::socket_path(dir)?;
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(Error::Io {
                what: format!("connecting to {}", path.display()),
                source: e,
            })
        }
    };
    let (mut sink, mut lines) =
        Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE)).split();
    // Hello first, under id 0 (no request uses it): its answer is not
    // waited for, and an owner from before it answers with an error that
    // is ignored the same way.
    let hello = Envelope {
        v: PROTOCOL,
        id: 0,
        call: Call::Hello { kind },
    };
    if sink
        .send(serde_json::to_string(&hello).unwrap_or_default())
        .await
        .is_err()
    {
        // The owner went away between accepting and reading.
        return Ok(None);
    }
    let (tx, mut rx) = mpsc::channel::<Request>(64);
    let (events, _) = broadcast::channel(1024);
    let waiting: Waiting = Arc::default();

    // Answers and events from the owner.
    let (w, ev) = (waiting.clone(), events.clone());
    tokio::spawn(async move {
        while let Some(Ok(line)) = lines.next().await {
            let a = match read_owner_line(&line) {
                OwnerLine::Answer(a) => a,
                OwnerLine::Event(e) => {
                    let _ = ev.send(*e);
                    continue;
                }
                OwnerLine::Ignored => continue,
                OwnerLine::Unreadable => {
                    tracing::debug!("control socket: unreadable line from the owner");
                    continue;
                }
            };
            let adapter = w.lock().ok().and_then(|mut m| m.remove(&a.id));
            if let Some(f) = adapter {
                f(match (a.ok, a.err) {
                    (_, Some(err)) => Err(err.into()),
                    (Some(v), None) => Ok(v),
                    (None, None) => Ok(Value::Null),
                });
            }
        }
        // The owner went away: everyone still waiting hears it.
        let left: Vec<Adapter> = w
            .lock()
            .map(|mut m| m.drain().map(|(_, f)| f).collect())
            .unwrap_or_default();
        for f in left {
            f(Err(Error::EngineStopped));
        }
    });

    // Requests from the views.
    tokio::spawn(async move {
        let mut next = 0u64;
        while let Some(req) = rx.recv().await {
            let (call, adapter) = match translate(req) {
                Translated::Call(c, a) => (c, a),
                Translated::Close(done) => {
                    let _ = sink.close().await;
                    let _ = done.send(());
                    return;
                }
            };
            next += 1;
            if let Ok(mut m) = waiting.lock() {
                m.insert(next, adapter);
            }
            let env = Envelope {
                v: PROTOCOL,
                id: next,
                call,
            };
            let line = serde_json::to_string(&env).unwrap_or_default();
            if sink.send(line).await.is_err() {
                let f = waiting.lock().ok().and_then(|mut m| m.remove(&next));
                if let Some(f) = f {
                    f(Err(Error::EngineStopped));
                }
            }
        }
    });
    Ok(Some(EngineHandle {
        tx,
        events,
        secrets,
    }))
}

enum Translated {
    Call(Call, Adapter),
    Close(oneshot::Sender<()>),
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Protocol(format!("the owner's answer: {e}")))
}

/// An answer for a `Reply<T>`.
fn reply<T: DeserializeOwned + Send + 'static>(tx: Reply<T>) -> Adapter {
    Box::new(move |r| {
        let _ = tx.send(r.and_then(decode));
    })
}

/// An answer for a request that has no error path locally: an error
/// drops the sender, which the caller reads as "the engine has stopped".
fn plain<T: DeserializeOwned + Send + 'static>(tx: oneshot::Sender<T>) -> Adapter {
    Box::new(move |r| {
        if let Ok(v) = r.and_then(decode) {
            let _ = tx.send(v);
        }
    })
}

fn translate(req: Request) -> Translated {
    use Translated::Call as C;
    match req {
        Request::AddAccount(cfg, r) => C(Call::AddAccount(cfg), reply(r)),
        Request::RemoveAccount(n, r) => C(Call::RemoveAccount(n), reply(r)),
        Request::Accounts(r) => C(Call::Accounts, reply(r)),
        Request::Freshness(r) => C(Call::Freshness, reply(r)),
        Request::Login(account, password, r) => C(Call::Login { account, password }, reply(r)),
        Request::Nodes(r) => C(Call::Nodes, reply(r)),
        Request::Pending(r) => C(Call::Pending, reply(r)),
        Request::Jobs(r) => C(Call::Jobs, reply(r)),
        Request::History(f, r) => C(Call::History(f), reply(r)),
        Request::JobEvents(id, r) => C(Call::JobEvents(id), reply(r)),
        Request::Audit(n, r) => C(Call::Audit(n), reply(r)),
        Request::Approve(nodes, Mode::All, r) if nodes.is_empty() => C(Call::ApproveAll, plain(r)),
        Request::Approve(nodes, _, r) => C(Call::Approve(nodes), plain(r)),
        Request::ApproveAt(nodes, at, r) => C(Call::ApproveAt(nodes, at), plain(r)),
        Request::Policies(r) => C(Call::Policies, reply(r)),
        Request::InstallWhenOnline(n, r) => C(Call::InstallWhenOnline(n), plain(r)),
        Request::Resend(id, r) => C(Call::Resend(id), plain(r)),
        Request::Cancel(id, r) => C(Call::Cancel(id), reply(r)),
        Request::Snooze(n, until, r) => C(Call::Snooze(n, until), reply(r)),
        Request::Skip(n, r) => C(Call::Skip(n), reply(r)),
        Request::AutoApprove(n, on, r) => C(Call::AutoApprove(n, on), reply(r)),
        Request::QuietHours(q, r) => C(Call::QuietHours(q), reply(r)),
        Request::NotificationsPaused(r) => C(Call::NotificationsPaused, reply(r)),
        Request::SetNotificationsPaused(p, r) => C(Call::SetNotificationsPaused(p), reply(r)),
        // The owner answers once the check is done.
        Request::CheckNow(n, r) => C(
            Call::CheckNow(n),
            Box::new(move |res: Result<Value>| {
                let _ = r.send(res.map(|_| {
                    let (tx, rx) = oneshot::channel();
                    let _ = tx.send(());
                    rx
                }));
            }),
        ),
        // The owner runs its own resume detector; a client's resume asks
        // it for a sweep at most.
        Request::Refresh(r) | Request::Resumed(r) => C(
            Call::Refresh,
            Box::new(move |res: Result<Value>| {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(res.map(|_| ()).map_err(|e| e.plain()));
                let _ = r.send(Ok(vec![rx]));
            }),
        ),
        Request::StartRollout(plan, r) => C(Call::StartRollout(plan), reply(r)),
        Request::Rollouts(r) => C(Call::Rollouts, reply(r)),
        Request::RolloutAction(id, a, r) => C(Call::RolloutAction(id, a), reply(r)),
        Request::Shutdown(done) => Translated::Close(done),
    }
}
