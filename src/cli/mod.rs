//! Command-line interface (SPEC §2): argument parsing and dispatch. Each command lives in
//! `commands.rs`; `main.rs` only calls [`main`].

/// `print!` that ends the process the Unix way when stdout's reader is gone (see
/// [`write_stdout`]).
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::write_stdout(format_args!($($t)*)) };
}

/// `println!` that ends the process the Unix way when stdout's reader is gone.
macro_rules! outln {
    () => { $crate::cli::write_stdout(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($t)*))) };
}

/// `eprintln!` with the text neutralised (see [`write_stderr`]).
macro_rules! errln {
    ($($t:tt)*) => { $crate::cli::write_stderr(format_args!("{}\n", format_args!($($t)*))) };
}

mod commands;
mod demo;
mod progress;
mod report;
mod undo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::report::seats::SeatFormat;
use crate::report::{Format, TextOrJson};

/// Exit codes shared by `plan` and `apply` (like `terraform plan -detailed-exitcode`).
pub mod exit {
    use crate::sync::RunResult;

    pub const IN_SYNC: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const CHANGES_PENDING: u8 = 2;
    pub const HELD: u8 = 3;

    /// The exit code of SPEC §2 for a run's result (`apply`, `run --once`): the CLI's
    /// business, computed from the outcome the lower layers return.
    pub fn of_run(r: RunResult) -> u8 {
        match r {
            RunResult::Success => IN_SYNC,
            RunResult::Held => HELD,
            RunResult::Failure => ERROR,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "idsync",
    version,
    about = "Keeps a Weights & Biases organization in step with a company directory, safely.",
    long_about = "Keeps a Weights & Biases organization in step with a company directory, safely.\n\n\
Reads people and groups from the directory, computes what the W&B org and its teams should look like, \
and applies the safe part of the difference. Guards hold back dangerous changes (the last admin, \
pipeline-key owners, mass deprovisions, suspicious directory reads) until a human approves them.\n\n\
Try it without touching anything real: `idsync demo`."
)]
pub struct Cli {
    /// Colour in reports and log lines: auto = only on a terminal, and only when NO_COLOR is unset.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether a stream gets ANSI colour: `auto` colours a terminal only, and never when
    /// NO_COLOR is set (no-color.org), so files, pipes and the journal get plain text.
    pub fn for_stream(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file [default: $IDSYNC_CONFIG, then /etc/idsync/idsync.toml]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration; with --connect also read the directory and call W&B.
    ///
    /// Exit 0 when valid, 1 otherwise, every problem located as file:line:column with the
    /// fix. Beyond what every command checks, it fails on what any plan or run started
    /// here would fail on: an *_env secret whose variable is unset or empty, an LDIF
    /// [source] path that cannot be read.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Also bind to the directory, read it and the W&B org, and report what was found:
        /// people and groups, people skipped and why, each policy group's member count. A
        /// policy group the directory lacks, or a policy.teams team W&B lacks with
        /// create = false, is an error with the nearest existing name.
        #[arg(long)]
        connect: bool,
    },
    /// Show what would change (a dry run). Exit 0 in sync, 2 changes pending, 3 some held, 1 error.
    ///
    /// Reads the directory, W&B and the state store; writes nothing (no state, no run
    /// record, no file but --out): tombstone clocks and baselines start with `apply` or `run`.
    Plan {
        #[command(flatten)]
        config: ConfigArg,
        /// Report format [default: text]
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also save the plan as JSON, for review and `apply --plan` / `approve`.
        #[arg(long, value_name = "PLAN.json")]
        out: Option<PathBuf>,
    },
    /// Re-read both sides and apply the ready actions. Exit 0 all applied, 3 some held, 1 error.
    ///
    /// With --plan, exit 2 when ready actions of the fresh plan were left out (not reviewed,
    /// or held when reviewed). With [notify], posts one webhook message afterwards when the
    /// held actions changed, the run failed after one that did not, or something was
    /// applied; a webhook that fails is a warning and never changes the exit code.
    Apply {
        #[command(flatten)]
        config: ConfigArg,
        /// Apply only actions of this reviewed plan that the fresh plan still contains
        /// unchanged; one held in it is applied only when approved now.
        #[arg(long, value_name = "PLAN.json")]
        plan: Option<PathBuf>,
        /// Approve these held action ids for this run; the approval is recorded only once
        /// the apply goes ahead (not when cancelled at the prompt).
        #[arg(long = "approve", value_name = "ID")]
        approve: Vec<String>,
        /// Why you approve (--approve): kept in the audit log with who approved what.
        #[arg(long, value_name = "TEXT", requires = "approve")]
        reason: Option<String>,
        /// Do not ask for confirmation on a terminal.
        #[arg(long)]
        yes: bool,
    },
    /// Record approval of held actions of a saved plan (all overridable ones if no --id).
    ///
    /// An approval releases the action only over the guards that held it in that plan and
    /// only while the change is the one reviewed (same W&B user, role, deprovision mode);
    /// it expires after guards.approval_ttl and is used up when the action is applied.
    /// Without --id on a terminal, it lists what it would release and asks. The audit log
    /// records who approved (the OS user, or SUDO_USER under sudo), what, over which guards,
    /// until when, and --reason. `idsync approvals` lists them, `idsync revoke` withdraws one.
    Approve {
        #[command(flatten)]
        config: ConfigArg,
        /// A plan saved with `idsync plan --out`.
        #[arg(value_name = "PLAN.json")]
        plan: PathBuf,
        /// Approve only these action ids.
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
        /// Why you approve (a ticket, a name): kept in the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// List pending approvals: action, user, team, the guards released, who approved, until when.
    ///
    /// Read-only (like `status`): unexpired approvals not yet used up by an apply. The same
    /// rows as `status`; --format json for scripts (its shape is in the README).
    Approvals {
        #[command(flatten)]
        config: ConfigArg,
        /// Output format: text for people, json for scripts.
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
    },
    /// Withdraw pending approvals, so their actions stay held (audited, with --reason).
    ///
    /// Takes the apply lock, so it never races a run that is applying: with the daemon
    /// mid-run it fails at once (try again). All or nothing: an id with no pending approval
    /// is an error naming it, and nothing is revoked. Exit 0 revoked, 1 error.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        /// Action ids whose approvals to withdraw (as `idsync approvals` lists them).
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
        /// Why you revoke: kept in the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Show the last runs, tombstones and pending approvals from the state store (read-only).
    ///
    /// Each tombstone with its cause and when deprovisioning is planned, each pending
    /// approval with its action, user and team; --format json for scripts (README).
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Output format: text for people, json for scripts (its shape is in the README).
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
    },
    /// One person end to end: directory entry and groups, desired role and teams with the
    /// rule behind each, the W&B user, the planned actions with reasons and holds.
    ///
    /// When nothing is planned it says why (out of scope, ignored, a service account, idsync
    /// itself, frozen, inside a grace period with the deadline, already in sync, ...). Reads
    /// the directory, W&B and the state store like `plan`, and writes nothing. The email is
    /// matched case-insensitively. Exit 0 nothing planned for the person, 2 actions pending,
    /// 3 some held by a guard, 1 error or the email is in neither the directory nor W&B.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// The person's email, as the directory or W&B has it (any case).
        #[arg(value_name = "EMAIL")]
        email: String,
        /// Output format: text for people, json for scripts (its shape is in the README).
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
    },
    /// Every change idsync made to one person, oldest first, from the audit log.
    ///
    /// Run id, time, action, reason, result, and for an action an approval released, who
    /// approved it over which guards; approvals given and revoked too. Reads only the audit
    /// log in daemon.state_dir (streamed), never the directory or W&B. Exit 0, or 1 on error.
    History {
        #[command(flatten)]
        config: ConfigArg,
        /// The person's email (any case).
        #[arg(value_name = "EMAIL")]
        email: String,
        /// Output format: text for people, json for scripts (its shape is in the README).
        #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
    },
    /// A plan that reverses what one run applied, guarded like any plan. Exit codes as `plan`.
    ///
    /// A create becomes a deprovision, an add a removal, a role change goes back to its
    /// `from`, a deprovision becomes a reactivation (on SaaS a re-add) plus the org role and
    /// teams the person had then (from the restore snapshot idsync stored). Changes a later
    /// run superseded, or that W&B no longer shows, are left out and listed with why; where
    /// the directory disagrees (the next regular run would redo the change) it warns.
    /// Reads the audit log, the directory, W&B and the state store; writes nothing but
    /// --out. Apply it with `idsync apply --plan PLAN.json`, which re-derives the undo
    /// fresh and applies only the actions that are in both, unchanged and ready.
    Undo {
        #[command(flatten)]
        config: ConfigArg,
        /// The run to undo, as `idsync status` or `idsync history` show it.
        #[arg(value_name = "RUN_ID")]
        run_id: String,
        /// Report format [default: text]
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also save the undo plan as JSON, for review and `apply --plan` / `approve`.
        #[arg(long, value_name = "PLAN.json")]
        out: Option<PathBuf>,
    },
    /// Run as a service: plan and apply on daemon.schedule, serve /metrics /healthz /readyz /status.
    ///
    /// SIGTERM/SIGINT finish the action in flight (or abandon a read, before anything is written)
    /// and exit 0; a second one exits at once. SIGHUP reloads the config (an invalid one is logged
    /// and the running one kept). Logs follow [log]; RUST_LOG overrides its level. With
    /// [notify], a webhook message after each run whose held actions changed, the first
    /// failure after a success, or that applied something (never delaying the next run).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// One run, no schedule and no HTTP server. Exit 0 all applied, 3 some held, 1 error or stopped by a signal.
        #[arg(long)]
        once: bool,
    },
    /// Read-only reports on the directory and the W&B org (never change W&B or the state store).
    #[command(subcommand)]
    Report(ReportCommand),
    /// Re-render a saved plan for review, reading nothing else (no config, directory or W&B).
    ///
    /// Exit 0 when the file was read and rendered, 1 when it is missing or not a plan.
    Show {
        /// A plan saved by `idsync plan --out`.
        #[arg(value_name = "PLAN.json")]
        plan: PathBuf,
        /// Report format [default: text]
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print shell completions for bash, zsh or fish on stdout.
    ///
    /// For example `idsync completions bash > /etc/bash_completion.d/idsync`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the idsync(1) man page (roff) on stdout, e.g. `idsync man | man -l -`.
    Man,
    /// A self-contained tour: a W&B sandbox on loopback, an example directory, plan, apply, re-plan.
    Demo {
        /// Keep the demo's directory (config, LDIF, state store, audit log) instead of
        /// deleting it at exit, to look at it or re-run commands against it.
        #[arg(long)]
        keep: bool,
    },
    /// Serve the W&B sandbox (an emulator of W&B's SCIM API) to try idsync safely.
    Sandbox(SandboxArgs),
    /// Manage the state store itself (see `idsync state migrate --help`).
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy the SQLite state (daemon.state_dir) into the PostgreSQL database of [state].
    #[command(long_about = "Copy the SQLite state in daemon.state_dir into the PostgreSQL database that \
[state] url_file / url_env names, so a single-node install can move to backend = \"postgres\": set \
backend = \"postgres\" and the URL in the config first, stop the daemon, run this, then start it again. \
Everything the state holds is copied (run history, the journal with any interrupted action, the ledger, \
tombstones with their clocks, approvals, anchors, the source-health baseline, restore snapshots, the last \
notification) in one transaction; the SQLite file is only read and stays as it was. The audit log stays a \
file in daemon.state_dir, and its lines are copied into the database's shared audit trail too. A target that already holds idsync state is refused unless --replace. \
Exit 0 when copied, 1 otherwise.")]
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
        /// The backend to copy into (only postgres).
        #[arg(long, value_enum)]
        to: MigrateTarget,
        /// Discard what the target database already holds of idsync's state, and copy.
        #[arg(long)]
        replace: bool,
    },
}

/// Where `idsync state migrate` copies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MigrateTarget {
    Postgres,
}

/// The shells `idsync completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Who holds a seat, who has not used it, orphans, external collaborators, estimated cost.
    #[command(long_about = "Who holds a W&B seat, who has not used it, who is in W&B but not in the directory, \
and what it costs. Reads the directory and the W&B org like `idsync plan`, and the state store's tombstone clocks; \
never writes to W&B and never writes to the state store. Exit 0 on success, 1 on error.\n\n\
Per user: email, org role, active, teams and roles, lastActiveAt / daysActive (\"never\" when W&B reports \
lastActiveAt: null, which it documents as never active; \"unknown\" when the server does not report it, never guessed), \
in the directory (and disabled there), in scope, pipeline-key owner, tombstone.\n\n\
Inactive: an active user whose lastActiveAt is MORE than N days ago (exactly N days is not inactive), or who was never \
active; their seats count in the inactive cost. A deactivated user holds no seat and is never inactive. \
Orphan: an active, in-scope user (managed domain, not ignored, not idsync itself) with no directory entry. \
External: a user whose email domain is not in policy.managed_domains. \
Cost: active users by org role at [report] seat_price; admin and viewer seats cost the member price unless set.")]
    Seats {
        #[command(flatten)]
        config: ConfigArg,
        /// Report format.
        #[arg(long, value_enum, default_value_t = SeatFormat::Text)]
        format: SeatFormat,
        /// Users last active more than N days ago are inactive [default: [report] inactive_days, else 90]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36_500))]
        inactive_days: Option<u32>,
        /// Text: one line per user with every column and every cell whole, instead of fitting
        /// 100 columns (teams, pipeline keys and tombstones then move to lines under each user).
        #[arg(long)]
        wide: bool,
    },
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: std::net::SocketAddr,
    /// Seed org (JSON); default: the bundled example org.
    #[arg(long, value_name = "FILE")]
    pub org: Option<PathBuf>,
    /// The API key clients must present.
    #[arg(long, default_value = "sandbox-admin-key")]
    pub api_key: String,
    /// saas | dedicated | self-managed
    #[arg(long, default_value = "saas")]
    pub deployment: String,
    /// Emulated server version (e.g. 0.55.0 for DELETE-deactivates, < 0.79 rejects Bearer).
    #[arg(long)]
    pub server_version: Option<String>,
    /// Path the SCIM API is served under.
    #[arg(long, default_value = "/scim")]
    pub scim_path: String,
    /// Added to every SCIM response, like "20ms".
    #[arg(long, default_value = "0ms")]
    pub latency: String,
    /// Share of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Share of requests answered 429.
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Share of requests answered with malformed JSON.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// Seed for the fault injection.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seats in the org (POST /Users fails with "Seat limit reached" beyond it).
    #[arg(long)]
    pub seat_limit: Option<usize>,
    /// Omit lastActiveAt/daysActive from users, like W&B servers older than the activity fields.
    #[arg(long)]
    pub no_activity: bool,
    /// Honour startIndex/count in lists (unconfirmed at W&B). Without it every list answers
    /// everything up to 9999 resources with itemsPerPage 9999, as W&B is seen to.
    #[arg(long)]
    pub honour_paging: bool,
    /// List service accounts in /Users (unconfirmed at W&B): off, marked (a service-account
    /// schema extension, with the seeded email) or no-email.
    #[arg(long, value_enum, default_value = "off")]
    pub service_accounts: crate::sandbox::ServiceAccountListing,
}

/// Text as it may be shown on a terminal: formatted, then with its control characters made
/// visible (`report::escape`), since the arguments often carry names and errors that came
/// from a directory or a server.
fn terminal_text(args: std::fmt::Arguments<'_>) -> String {
    let text = args.as_str().map_or_else(|| args.to_string(), str::to_string);
    crate::report::escape::neutralised(text, crate::report::escape::Keep::Layout)
}

/// Writes text to stdout, neutralised (see [`terminal_text`]).
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) {
    write_rendered(&terminal_text(args));
}

/// Writes to stderr, neutralised (see [`terminal_text`]); every message the CLI prints
/// there, errors included, goes through this.
pub(crate) fn write_stderr(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    // Nothing sensible is left to do when stderr itself is gone.
    let _ = std::io::stderr().lock().write_all(terminal_text(args).as_bytes());
}

/// Writes a report to stdout as it is: what a `report` renderer returns, which
/// neutralised its values itself and may have coloured them. SIGPIPE stays ignored
/// (Rust's default), so a socket whose peer went away is an error idsync reports like any
/// other, never a silent death; only a closed stdout (`idsync plan | head`) ends the
/// process, the way Unix tools end: by SIGPIPE, without a panic or a message.
pub(crate) fn write_rendered(text: &str) {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => die_of_sigpipe(),
        Err(e) => {
            errln!("error: cannot write the report to standard output: {e}");
            std::process::exit(i32::from(exit::ERROR));
        }
    }
}

/// [`write_stdout`] for a report written piece by piece (a large JSON plan), through one
/// buffer. The writer is a concrete type, not `dyn Write`: serde_json writes a pretty
/// report in millions of small pieces, and each was a virtual call.
pub(crate) fn stream_stdout(f: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>) {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match f(&mut w).and_then(|()| w.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => die_of_sigpipe(),
        Err(e) => {
            errln!("error: cannot write the report to standard output: {e}");
            std::process::exit(i32::from(exit::ERROR));
        }
    }
}

fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default disposition and raising the signal in this process;
    // SIG_DFL is always valid for SIGPIPE, whose default action ends the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached: SIGPIPE's default action ends the process. 128 + 13 as shells report it.
    std::process::exit(141)
}

/// Parses arguments, runs the command and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print and succeed; every usage error exits 1 (SPEC §2),
        // never clap's 2, which scripts read as "changes pending".
        Err(e) => {
            let code = if e.use_stderr() { exit::ERROR } else { exit::IN_SYNC };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            errln!("error: {e}");
            ExitCode::from(exit::ERROR)
        }
    }
}
