//! The app under Tauri's mock runtime: the real commands, state, engine and
//! event forwarding, no window system. Calls go through the IPC layer the
//! way the front end's do (JSON in, JSON out).

#![allow(dead_code)]

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use greenlight_app::{AppOptions, AppState};
use serde_json::Value;
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime};
use tauri::webview::InvokeRequest;
use tauri::{App, Listener, WebviewWindow};

pub struct TestApp {
    pub app: App<MockRuntime>,
    pub window: WebviewWindow<MockRuntime>,
    /// Every `engine-event` payload, in order.
    pub events: mpsc::Receiver<Value>,
}

pub fn options(dir: &Path, memory_secrets: bool) -> AppOptions {
    AppOptions {
        data_dir: dir.to_path_buf(),
        actor: "tester".into(),
        memory_secrets,
        demo_speed: greenlight_core::demo::DemoSpeed::Fast,
        simulator: Some(greenlight_tests::sim_exe()),
        tune: |c| {
            c.status_poll_fast = Duration::from_millis(100);
            c.status_poll_slow = Duration::from_millis(300);
            c.cloud_check_interval = Duration::from_secs(2);
            c.rollback_grace = Duration::from_millis(800);
        },
        launch_wait: greenlight_app::LAUNCH_WAIT,
    }
}

/// The app, launched, once it has opened the keychain and the data
/// directory (or found it held, or failed to open it).
pub fn start(opts: AppOptions) -> TestApp {
    let t = launch(opts);
    t.poll(
        "app_status",
        serde_json::json!({}),
        Duration::from_secs(60),
        "the app to open its data",
        |v| v["engine_owner"] != "opening",
    );
    t
}

/// The app right after its setup hook: the window exists, the state may
/// still be opening.
pub fn launch(opts: AppOptions) -> TestApp {
    let mut app = greenlight_app::wire(mock_builder(), opts, |_| {})
        .build(mock_context(noop_assets()))
        .expect("app builds");
    // Tauri runs the setup hook (state, event forwarding) on the first
    // iteration of the event loop; one iteration, not a loop, so the
    // deprecation's busy-loop concern does not apply.
    #[allow(deprecated)]
    app.run_iteration(|_, _| {});
    let window = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("window");
    let (tx, events) = mpsc::channel();
    app.listen_any("engine-event", move |e| {
        if let Ok(v) = serde_json::from_str::<Value>(e.payload()) {
            let _ = tx.send(v);
        }
    });
    // The state is managed during setup; make sure it is there.
    assert!(tauri::Manager::try_state::<AppState>(&app).is_some());
    TestApp {
        app,
        window,
        events,
    }
}

impl TestApp {
    /// Invokes a command as the front end does; `Err` carries the typed error.
    pub fn call(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        let res = get_ipc_response(
            &self.window,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().expect("url"),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: tauri::test::INVOKE_KEY.to_string(),
            },
        );
        match res {
            Ok(body) => Ok(body.deserialize::<Value>().unwrap_or(Value::Null)),
            Err(e) => Err(e),
        }
    }

    /// Calls until `f` accepts the answer, or panics after `timeout`.
    pub fn poll(
        &self,
        cmd: &str,
        args: Value,
        timeout: Duration,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + timeout;
        loop {
            if let Ok(v) = self.call(cmd, args.clone()) {
                if f(&v) {
                    return v;
                }
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for an engine event `f` accepts; returns it.
    pub fn wait_event(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if f(&v) => return v,
                Ok(_) => continue,
                Err(_) => panic!("timed out waiting for the event: {what}"),
            }
        }
    }
}
