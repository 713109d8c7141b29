//! The command line, as clap parses it. Kept apart from the code that runs
//! commands so the whole interface can be read in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Greenlight: see which of your devices have a firmware update waiting,
/// approve it, and watch it finish.
#[derive(Debug, Parser)]
#[command(name = "greenlight", version, about, long_about = None)]
pub struct Cli {
    /// Where Greenlight keeps its state (shared with the desktop app).
    #[arg(long, global = true, env = "GREENLIGHT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Machine-readable output: one JSON document (one object per line for `watch`).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the built-in demo fleet (no hardware, no account) and watch it live.
    Demo(DemoArgs),
    /// Add, list or remove accounts (RainMaker cloud, MQTT brokers).
    #[command(subcommand)]
    Account(AccountCmd),
    /// Every device with its firmware version and status.
    Nodes,
    /// Updates waiting for your approval.
    Pending(PendingArgs),
    /// Approve pending updates.
    Approve(ApproveArgs),
    /// Remind me later: hide a device's pending update for a while.
    Snooze(SnoozeArgs),
    /// Skip this version on a device (a newer version will show again).
    Skip(NodeArg),
    /// Update jobs: running and finished.
    Jobs,
    /// Every approval and how it ended.
    History(HistoryArgs),
    /// Policies: per-device auto-approve, quiet hours.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Pause or resume desktop notifications (the app's and `greenlight
    /// watch`'s alike), or show whether they are paused.
    #[command(subcommand)]
    Notifications(NotificationsCmd),
    /// Run the engine: follow every device, apply policies, print events.
    /// When the app (or another daemon) already runs it, attach to it.
    Watch,
    /// Who runs the engine for this data directory (the daemon, the app or
    /// nobody), and since when.
    Status,
    /// Run `greenlight watch` as a systemd user service (Linux): install,
    /// uninstall, or show its state.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Blynk legacy server: start, stop and follow over-the-air updates.
    #[command(subcommand)]
    Blynk(BlynkCmd),
    /// A staged approval (`approve --staged`): show it, resume it after a
    /// stop, retry its failed devices, or cancel it.
    #[command(subcommand)]
    Rollout(RolloutCmd),
}

/// `rollout` subcommands.
#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// The running or stopped rollout (else the last one) as stages.
    Status,
    /// Go on with the devices not approved yet; failed ones stay failed.
    /// A rollout that runs is followed (after its command was closed).
    Resume(RolloutWait),
    /// Approve the failed devices again, first, then go on.
    RetryFailed(RolloutWait),
    /// Approve nothing more (updates already sent finish on their own).
    Cancel,
}

/// Following a rollout after acting on it.
#[derive(Debug, Args)]
pub struct RolloutWait {
    /// Return at once instead of following the rollout to its end.
    #[arg(long)]
    pub no_wait: bool,
}

/// `service` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Write a systemd user unit that runs `greenlight watch` (this binary,
    /// this data directory), enable it and start it.
    Install(ServiceInstallArgs),
    /// Stop and disable the service and remove its unit file.
    Uninstall,
    /// The unit file, whether systemd has it enabled and running, and who
    /// runs the engine for the data directory.
    Status,
}

/// `service install`.
#[derive(Debug, Args)]
pub struct ServiceInstallArgs {
    /// Write and enable the unit without starting it now (it starts with
    /// the next user session, or at boot with lingering).
    #[arg(long)]
    pub no_start: bool,
}

/// `blynk` subcommands.
#[derive(Debug, Subcommand)]
pub enum BlynkCmd {
    /// Add, list or remove Blynk servers (admin accounts).
    #[command(subcommand)]
    Account(BlynkAccountCmd),
    /// Upload a firmware and start updating one device, a user's devices, one
    /// of their projects, or every device.
    Start(BlynkStartArgs),
    /// Stop updates on a server (its stop is global: every campaign ends).
    Stop(BlynkAccountArg),
    /// Campaigns being followed and each device's state.
    Status(BlynkStatusArgs),
    /// Every campaign and how it ended.
    History(BlynkHistoryArgs),
    /// Staged campaigns (`start --staged`): where they are, extend one
    /// stopped before its extension, or cancel one.
    #[command(subcommand)]
    Rollout(BlynkRolloutCmd),
}

/// `blynk rollout` subcommands.
#[derive(Debug, Subcommand)]
pub enum BlynkRolloutCmd {
    /// Staged campaigns under way (after asking the server, which moves
    /// them on) and the most recent ended ones.
    Status(BlynkRolloutPick),
    /// Send the update to the rest now, after a stop before the extension
    /// or an extension that is not confirmed: your explicit choice.
    Resume(BlynkRolloutFollow),
    /// Cancel a staged campaign. After its extension this stops updates on
    /// the server (its stop is global: every campaign on it ends).
    Cancel(BlynkRolloutPick),
}

/// Which staged campaign.
#[derive(Debug, Args)]
pub struct BlynkRolloutPick {
    /// The server's account (needed only when several have one).
    #[arg(long)]
    pub account: Option<String>,
}

/// `blynk rollout resume`.
#[derive(Debug, Args)]
pub struct BlynkRolloutFollow {
    /// The server's account (needed only when several have one).
    #[arg(long)]
    pub account: Option<String>,
    /// Return once the server took the update instead of following it to the end.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds between polls while following.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub interval: f64,
}

/// `blynk account` subcommands.
#[derive(Debug, Subcommand)]
pub enum BlynkAccountCmd {
    /// Add a Blynk server with its super-admin account (checked by logging in).
    Add(BlynkAccountArgs),
    /// List Blynk servers.
    List,
    /// Forget a Blynk server and its password (its campaigns stay in history).
    Remove {
        /// Account name.
        name: String,
    },
}

/// `blynk account add`.
#[derive(Debug, Args)]
pub struct BlynkAccountArgs {
    /// A name for this server.
    #[arg(long)]
    pub name: String,
    /// Admin URL, e.g. https://blynk.local:9443.
    #[arg(long)]
    pub url: String,
    /// Super-admin email.
    #[arg(long)]
    pub user: String,
    /// Read the admin password from standard input instead of a prompt.
    #[arg(long)]
    pub password_stdin: bool,
    /// Trust the server's self-signed certificate with this SHA-256
    /// fingerprint (hex, colons allowed): the only way without a terminal.
    #[arg(long, value_name = "HEX")]
    pub trust_fingerprint: Option<String>,
    /// The server's upload limit in bytes (web.request.max.size).
    #[arg(long, value_name = "BYTES", default_value_t = 524_288)]
    pub upload_limit: u64,
}

/// A Blynk account.
#[derive(Debug, Args)]
pub struct BlynkAccountArg {
    /// Account name.
    #[arg(long)]
    pub account: String,
}

/// Which devices `blynk start` updates: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BlynkTargetArgs {
    /// One device by its auth token, now (it must be online).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Every device of this user, each when it next logs in.
    #[arg(long, value_name = "EMAIL")]
    pub user: Option<String>,
    /// Every device on the server, each when it next logs in.
    #[arg(long)]
    pub all: bool,
}

/// `blynk start`.
#[derive(Debug, Args)]
pub struct BlynkStartArgs {
    /// Account name.
    #[arg(long)]
    pub account: String,
    /// The compiled sketch (Arduino IDE: Sketch → Export compiled binary).
    #[arg(long, value_name = "FILE")]
    pub firmware: PathBuf,
    #[command(flatten)]
    pub target: BlynkTargetArgs,
    /// Only this project of the user (case-insensitive).
    #[arg(long, value_name = "NAME", requires = "user")]
    pub project: Option<String>,
    /// Suspect a reboot loop after this many reconnects on the old build.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub loop_after: u32,
    /// Carefully: the --canary device first, then the --user's (or --all)
    /// devices only once it runs the new build and stays up; stopped at the
    /// first failure. Follows it to the end unless --no-wait.
    #[arg(long, requires = "canary")]
    pub staged: bool,
    /// With --staged: the token of the one device to update first.
    #[arg(long, value_name = "TOKEN", requires = "staged")]
    pub canary: Option<String>,
    /// With --staged: how long the canary must stay online on the new
    /// build before the rest get it, e.g. 90s, 5m (default 60s).
    #[arg(long, value_name = "DURATION", requires = "staged")]
    pub settle: Option<String>,
    /// With --staged: how long the canary has to come back on the new
    /// build, e.g. 10m (the default).
    #[arg(long, value_name = "DURATION", requires = "staged")]
    pub canary_timeout: Option<String>,
    /// With --staged: return once the canary was sent the update; the
    /// daemon (`greenlight watch`), the app or `greenlight blynk rollout
    /// status` moves it on.
    #[arg(long, requires = "staged")]
    pub no_wait: bool,
    /// With --staged: seconds between polls while following.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub interval: f64,
}

/// `blynk status`.
#[derive(Debug, Args)]
pub struct BlynkStatusArgs {
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// Keep polling until every device is updated, looping, offline or
    /// otherwise settled (or Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    /// Seconds between polls with --follow.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub interval: f64,
}

/// `blynk history`.
#[derive(Debug, Args)]
pub struct BlynkHistoryArgs {
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// At most this many campaigns.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Approve every pending update without asking (for scripts).
    #[arg(long)]
    pub approve_all: bool,
    /// Leave after every job has ended (instead of waiting for Ctrl-C).
    #[arg(long)]
    pub exit_when_done: bool,
}

/// `account` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Add an account.
    #[command(subcommand)]
    Add(AccountAdd),
    /// List accounts.
    List,
    /// Remove an account (and its secrets from the keychain).
    Remove {
        /// Account name.
        name: String,
    },
}

/// Kinds of account.
#[derive(Debug, Subcommand)]
pub enum AccountAdd {
    /// An ESP RainMaker cloud account (optionally with a direct MQTT broker).
    Rainmaker(RainmakerAccountArgs),
    /// A direct MQTT broker only (self-hosted nodes), no cloud.
    Mqtt(MqttAccountArgs),
}

/// `account add rainmaker`.
#[derive(Debug, Args)]
pub struct RainmakerAccountArgs {
    /// A name for this account.
    #[arg(long)]
    pub name: String,
    /// Cloud API base URL, with or without `/v1`.
    #[arg(long, default_value = greenlight_core::rainmaker::rest::PUBLIC_BASE)]
    pub url: String,
    /// Account email.
    #[arg(long)]
    pub user: String,
    /// Also follow nodes live over this MQTT broker (mqtt:// or mqtts://).
    #[arg(long)]
    pub mqtt_url: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Read the password from standard input instead of a prompt.
    #[arg(long)]
    pub password_stdin: bool,
    /// Trust the server's self-signed certificate with this SHA-256
    /// fingerprint (hex, colons allowed): the only way without a terminal.
    #[arg(long, value_name = "HEX")]
    pub trust_fingerprint: Option<String>,
}

/// `account add mqtt`.
#[derive(Debug, Args)]
pub struct MqttAccountArgs {
    /// A name for this account.
    #[arg(long)]
    pub name: String,
    /// Broker URL, mqtt://HOST:PORT or mqtts://HOST:PORT.
    #[arg(long)]
    pub mqtt_url: String,
    /// Broker user name (its password is asked for, or read with --password-stdin).
    #[arg(long)]
    pub username: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Read the broker password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Send the broker password over an unencrypted mqtt:// URL anyway
    /// (refused without this, except to a broker on this computer).
    #[arg(long)]
    pub allow_plaintext_password: bool,
}

/// TLS files for an MQTT broker.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) that signed the broker's certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// `pending` options.
#[derive(Debug, Args)]
pub struct PendingArgs {
    /// Ask every node to check for updates now (MQTT accounts).
    #[arg(long)]
    pub check: bool,
}

/// `approve` options.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Node ids or names (`ACCOUNT/NODE` when one is in two accounts).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub nodes: Vec<String>,
    /// Every pending update (skips up-to-date and offline devices and says so).
    #[arg(long)]
    pub all: bool,
    /// Offline devices: install as soon as they come online.
    #[arg(long)]
    pub when_online: bool,
    /// Install at this local time (HH:MM) instead of now.
    #[arg(long, value_name = "HH:MM")]
    pub at: Option<String>,
    /// Return at once instead of following the jobs to their end.
    #[arg(long)]
    pub no_wait: bool,
    /// Carefully: one device first; once it runs the new version and has
    /// stayed online for the soak time, the rest a batch at a time. The
    /// first failure, rejection or rollback stops it (`greenlight rollout`).
    #[arg(long, conflicts_with_all = ["when_online", "at"])]
    pub staged: bool,
    /// With --staged: the device that goes first (default: the first online one).
    #[arg(long, requires = "staged", value_name = "NODE")]
    pub canary: Option<String>,
    /// With --staged: how many devices update at once after the first (default 2).
    #[arg(long, requires = "staged", value_name = "N")]
    pub batch: Option<u32>,
    /// With --staged: how long an updated device must stay online on the
    /// new version before the next ones go, e.g. 30s, 5m, 1h (default 5m).
    #[arg(long, requires = "staged", value_name = "DURATION")]
    pub soak: Option<String>,
    /// With --staged: approve only between these local times (e.g. 01:00-05:00).
    #[arg(long, requires = "staged", value_name = "HH:MM-HH:MM")]
    pub window: Option<String>,
    /// Stop following a job that the device has not started within this
    /// many seconds (it stays approved: it is delivered when the device is
    /// back, by `greenlight watch`, the app or the next command that sees it).
    #[arg(long, value_name = "SECONDS", default_value_t = 90)]
    pub start_timeout: u64,
}

/// A single node.
#[derive(Debug, Args)]
pub struct NodeArg {
    /// Node id or name (`ACCOUNT/NODE` when one is in two accounts).
    pub node: String,
}

/// `snooze` options.
#[derive(Debug, Args)]
pub struct SnoozeArgs {
    /// Node id or name (`ACCOUNT/NODE` when one is in two accounts).
    pub node: String,
    /// How long, e.g. 1d, 12h, 30m.
    #[arg(long = "for", value_name = "DURATION", default_value = "1d")]
    pub duration: String,
}

/// Outcomes to filter history by.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResultFilter {
    /// Finished with the new firmware running.
    Success,
    /// Failed, rejected, rolled back, stuck or cancelled.
    Failure,
    /// Not finished yet.
    Running,
}

/// `history` options.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// CSV instead of a table.
    #[arg(long)]
    pub csv: bool,
    /// Only this device (id or name).
    #[arg(long)]
    pub device: Option<String>,
    /// Only this outcome.
    #[arg(long, value_enum)]
    pub result: Option<ResultFilter>,
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Show the policies.
    Show,
    /// Auto-approve updates for a device (opt-in; failures still notify).
    AutoApprove {
        /// Node id or name.
        node: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Quiet hours: approvals wait until the window ends. `off` clears them.
    QuietHours {
        /// HH:MM-HH:MM (local time), or `off`.
        window: String,
    },
}

/// `notifications` subcommands.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum NotificationsCmd {
    /// Show none until resumed (kept across restarts).
    Pause,
    /// Show them again.
    Resume,
    /// Whether they are paused.
    Status,
}
