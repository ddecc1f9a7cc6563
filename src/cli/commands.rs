//! The commands of SPEC §2. Each reads its inputs through `sync`, renders through
//! `report`, and returns an exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{exit, Cli, Command, ConfigArg};
use crate::apply::{self, ActionResult};
use crate::config;
use crate::error::Error;
use crate::plan::{Action, ActionId, Approval, Plan, PlanInput, Verdict};
use crate::report::{self, Format, RenderOptions, TextOrJson};
use crate::state::{actor, human, AuditLog, AuditRecord, RunRecord, StateBackend};
use crate::sync::{self, Env};

pub async fn run(cli: Cli) -> Result<u8, Error> {
    let _ = COLOR.set(cli.color);
    let log_color = cli.color.for_stream(std::io::stderr().is_terminal());
    if let Command::Run { config, once } = cli.command {
        // The daemon logs as [log] says, so it sets up logging after loading the config.
        return Ok(match crate::daemon::run(&config_path(config), once, log_color).await? {
            crate::daemon::Ended::Stopped => exit::IN_SYNC,
            crate::daemon::Ended::Once(r) => exit::of_run(r),
        });
    }
    init_logging(log_color);
    match cli.command {
        Command::CheckConfig { config, connect } => check_config(&config_path(config), connect).await,
        Command::Plan { config, format, out } => plan(&config_path(config), format, out.as_deref()).await,
        Command::Apply {
            config,
            plan,
            approve,
            reason,
            yes,
        } => {
            let opts = ApplyOpts {
                plan_file: plan,
                approve,
                reason,
                yes,
            };
            apply(&config_path(config), opts).await
        }
        Command::Approve { config, plan, ids, reason } => approve(&config_path(config), &plan, &ids, reason.as_deref()),
        Command::Approvals { config, format } => approvals(&config_path(config), format),
        Command::Revoke { config, ids, reason } => revoke(&config_path(config), &ids, reason.as_deref()),
        Command::Status { config, format } => status(&config_path(config), format),
        Command::Explain { config, email, format } => explain(&config_path(config), &email, format).await,
        Command::History { config, email, format } => history(&config_path(config), &email, format),
        Command::Undo {
            config,
            run_id,
            format,
            out,
        } => undo(&config_path(config), &run_id, format, out.as_deref()).await,
        Command::Report(super::ReportCommand::Seats {
            config,
            format,
            inactive_days,
            wide,
        }) => super::report::seats(&config_path(config), format, inactive_days, wide).await,
        Command::Show { plan, format } => show(&plan, format),
        Command::Completions { shell } => Ok(completions(shell)),
        Command::Man => man(),
        Command::Demo { keep } => super::demo::run(keep).await,
        Command::Sandbox(args) => super::demo::sandbox(args).await,
        Command::State(super::StateCommand::Migrate { config, to: _, replace }) => state_migrate(&config_path(config), replace),
        Command::Run { .. } => Err(Error::Usage("internal: run is dispatched above".into())),
    }
}

/// `--color` as given on the command line (`auto` until parsed).
static COLOR: std::sync::OnceLock<super::ColorChoice> = std::sync::OnceLock::new();

/// Logs go to stderr; `RUST_LOG` tunes them (the daemon uses `[log]`). Colour only where
/// `--color` says (a terminal, by default): `idsync plan 2> f` gets plain text.
fn init_logging(color: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::daemon::LogWriter::new(color))
        .with_ansi(color)
        .try_init();
}

pub(super) fn config_path(c: ConfigArg) -> PathBuf {
    c.config.unwrap_or_else(config::default_path)
}

pub(super) fn load_env(path: &Path) -> Result<Env, Error> {
    let env = Env::load(path)?;
    for w in &env.warnings {
        errln!("warning: {w}");
    }
    Ok(env)
}

pub(crate) fn new_run_id() -> String {
    sync::new_run_id(Utc::now())
}

/// The exit code a plan implies (SPEC §2): a suspicious read counts as held.
pub(crate) fn plan_exit_code(plan: &Plan) -> u8 {
    if plan.needs_a_human() {
        exit::HELD
    } else if plan.ready().next().is_some() {
        exit::CHANGES_PENDING
    } else {
        exit::IN_SYNC
    }
}

pub(super) fn color_stdout(format: Format) -> bool {
    format == Format::Text && COLOR.get().copied().unwrap_or_default().for_stream(std::io::stdout().is_terminal())
}

fn read_file(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        what: format!("cannot read {}", path.display()),
        source,
    })
}

fn record(
    store: &mut dyn StateBackend,
    run_id: &str,
    command: &str,
    started: chrono::DateTime<Utc>,
    result: &str,
    summary: BTreeMap<String, usize>,
    error: Option<String>,
) -> Result<(), Error> {
    store.record_run(&RunRecord {
        run_id: run_id.to_string(),
        command: command.to_string(),
        started_at: started,
        finished_at: Utc::now(),
        result: result.to_string(),
        summary,
        error,
    })?;
    Ok(())
}

async fn check_config(path: &Path, connect: bool) -> Result<u8, Error> {
    // What every command checks, plus what a plan or run started here would trip on
    // (unset *_env variables, a missing LDIF file); `load_env` then prints the warnings.
    crate::config::load_strict(path)?;
    let env = load_env(path)?;
    let c = &env.config;
    outln!("{}: configuration OK", env.path.display());
    outln!("  source: {}", c.source.kind.as_str());
    if let Some(from) = crate::source::http::describe(&c.source) {
        outln!("    {from}");
    }
    outln!(
        "  target: {} ({:?}, scim path {})",
        c.target.url,
        env.policy.deployment,
        c.target.scim_path
    );
    outln!("  managed domains: {}", env.policy.managed_domains.join(", "));
    outln!(
        "  org-role rules: {}, team mappings: {}, pipeline-key owners: {}",
        env.policy.org_roles.len(),
        env.policy.teams.len(),
        env.policy.guards.pipeline_owners.len()
    );
    match env.state_backend() {
        Ok(crate::state::Backend::Postgres { url, .. }) => outln!(
            "  state: {} (audit log and apply lock in {})",
            crate::state::PgStore::describe_url(url.expose()),
            env.state_dir().display()
        ),
        _ => outln!("  state: {}", env.state_dir().display()),
    }
    if let Some(n) = &c.notify {
        let on: Vec<&str> = n.on.iter().map(|e| e.as_str()).collect();
        let from = if n.webhook_url_file.is_some() {
            "webhook_url_file"
        } else {
            "webhook_url_env"
        };
        let format = match n.format {
            config::NotifyFormat::Slack => "slack",
            config::NotifyFormat::Json => "json",
        };
        // The URL is a secret: where it comes from is shown, never the URL.
        outln!("  notify: {format} message on {} (URL from {from})", on.join(", "));
    }
    if !connect {
        return Ok(exit::IN_SYNC);
    }
    let client = env.client()?;
    if let Some(connected) = crate::source::check_connection(&c.source, &env.base_dir).await? {
        outln!("directory: {connected}");
    }
    let dir = crate::source::read_directory(&c.source, &env.base_dir).await?;
    outln!("directory: read OK: {} people, {} groups", dir.people.len(), dir.groups.len());
    let state = crate::plan::PlanState::default();
    let org = client.snapshot().await?;
    outln!(
        "W&B: {} users ({} active), {} teams",
        org.users.len(),
        org.users.iter().filter(|u| u.active).count(),
        org.teams.len()
    );
    let plan = sync::plan_now(&env, &dir, &org, &state, Utc::now());
    let mut refs: Vec<(String, String)> = Vec::new();
    if let Some(g) = &env.policy.auto_add_group {
        refs.push(("auto_add_group".into(), g.clone()));
    }
    refs.extend(
        env.policy
            .org_roles
            .iter()
            .map(|r| (format!("org_roles ({})", r.role), r.group.clone())),
    );
    refs.extend(
        env.policy
            .teams
            .iter()
            .map(|r| (format!("team {} ({})", r.team, r.role), r.group.clone())),
    );
    for (what, g) in refs {
        let members: BTreeSet<&String> = dir.groups.iter().filter(|x| x.matches(&g)).flat_map(|x| x.members.iter()).collect();
        let found = dir.groups.iter().any(|x| x.matches(&g));
        if found {
            outln!("  {what}: {g}: {} members", members.len());
        } else {
            outln!("  {what}: {g}: NOT FOUND in the directory");
        }
    }
    for t in &c.policy.teams {
        if !org.teams.iter().any(|x| x.name == t.team) {
            let next = if t.create {
                "idsync creates it"
            } else {
                "NOT FOUND (create = false)"
            };
            outln!("  team {}: not in W&B: {next}", t.team);
        }
    }
    if plan.skipped.is_empty() {
        outln!("nothing skipped");
    } else {
        outln!("skipped ({}):", plan.skipped.len());
        for s in &plan.skipped {
            outln!("  {}: {}", s.entry, s.why);
        }
    }
    // A group the directory lacks or a team W&B lacks: located errors with the nearest
    // name, after the report above (which shows what was found).
    crate::config::check_references(c, &env.path, &dir, &org)?;
    Ok(exit::IN_SYNC)
}

/// A dry run: reads the state store (if there is one) and writes nothing, so a preview
/// from a laptop never changes what the daemon does next. Only `apply` and `run` persist.
async fn plan(path: &Path, format: Format, out: Option<&Path>) -> Result<u8, Error> {
    let env = load_env(path)?;
    let client = env.client()?;
    let started = Utc::now();
    let state = sync::load_state_read_only(&env)?;
    let (dir, org, _) = read_both_showing(&env, &client).await?;
    let plan = sync::plan_now(&env, &dir, &org, &state, started);
    if let Some(out) = out {
        save_plan(out, &plan)?;
        errln!("plan saved to {}", out.display());
    }
    print_plan(&plan, format, out);
    Ok(plan_exit_code(&plan))
}

/// `idsync explain`: one person, from the same read-only inputs and plan as `plan`.
async fn explain(path: &Path, email: &str, format: TextOrJson) -> Result<u8, Error> {
    let env = load_env(path)?;
    let client = env.client()?;
    let now = Utc::now();
    let state = sync::load_state_read_only(&env)?;
    let (dir, org, _) = read_both_showing(&env, &client).await?;
    let plan = sync::plan_now(&env, &dir, &org, &state, now);
    let x = crate::plan::explain(
        PlanInput {
            directory: &dir,
            org: &org,
            policy: &env.policy,
            state: &state,
            now,
        },
        &plan,
        email,
    );
    super::write_rendered(&report::explain::render(&x, format));
    Ok(match x.verdict {
        Verdict::NothingPlanned => exit::IN_SYNC,
        Verdict::Pending => exit::CHANGES_PENDING,
        Verdict::Held => exit::HELD,
        Verdict::Unknown => exit::ERROR,
    })
}

/// `idsync history`: one person's trail, from the audit log alone.
fn history(path: &Path, email: &str, format: TextOrJson) -> Result<u8, Error> {
    let env = load_env(path)?;
    let Some(who) = crate::model::Email::parse(email) else {
        return Err(Error::Usage(format!("{email:?} is not an email address; name the person by email")));
    };
    let h = super::undo::history(&env.state_dir(), &who)?;
    out!("{}", report::history::render(&h, format));
    Ok(exit::IN_SYNC)
}

/// `idsync undo`: the plan reversing a run, from the audit log and fresh reads of both
/// sides; read-only like `plan` (writes nothing but --out).
async fn undo(path: &Path, run_id: &str, format: Format, out: Option<&Path>) -> Result<u8, Error> {
    let env = load_env(path)?;
    let client = env.client()?;
    let now = Utc::now();
    let log = super::undo::run_log(&env.state_dir(), run_id)?;
    let state = sync::load_state_read_only(&env)?;
    let (dir, org, _) = read_both_showing(&env, &client).await?;
    let plan = super::undo::undo_plan(&env, run_id, &log, &dir, &org, &state, now);
    if let Some(out) = out {
        save_plan(out, &plan)?;
        errln!("undo plan saved to {}", out.display());
    }
    print_plan(&plan, format, out);
    Ok(plan_exit_code(&plan))
}

/// Writes the plan's JSON to `path`, streamed (a large plan is ~100 MB of text), into a
/// temporary file beside it that replaces `path` only once complete: a failed write
/// never leaves a truncated plan where a reviewed one was.
fn save_plan(path: &Path, plan: &Plan) -> Result<(), Error> {
    let io = |source| Error::Io {
        what: format!("cannot write {}", path.display()),
        source,
    };
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        report::write_json(plan, &mut w).map_err(std::io::Error::from)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// [`sync::read_both`] with a spinner on a terminal (a 100,000-person read takes seconds).
async fn read_both_showing(
    env: &sync::Env,
    client: &crate::wandb::WandbClient,
) -> Result<(crate::model::DirectorySnapshot, crate::model::OrgSnapshot, sync::PhaseDurations), Error> {
    let _spinner = super::progress::Spinner::start(&format!(
        "reading the directory ({}) and W&B ({})",
        env.config.source.kind.as_str(),
        env.config.target.url
    ));
    sync::read_both(env, client).await
}

/// Renders a plan on stdout; the release hints name `plan_file` when it was saved.
fn print_plan(plan: &Plan, format: Format, plan_file: Option<&Path>) {
    if format == Format::Json {
        return super::stream_stdout(|w| report::write_json(plan, w).map_err(Into::into));
    }
    let opts = RenderOptions {
        color: color_stdout(format),
        plan_file: plan_file.map(|p| p.display().to_string()),
    };
    super::write_rendered(&report::render(plan, format, &opts));
}

/// `idsync show`: a saved plan rendered again, for review. Reads only the file.
fn show(plan_file: &Path, format: Format) -> Result<u8, Error> {
    let plan = report::parse_plan_json(&read_file(plan_file)?)?;
    print_plan(&plan, format, Some(plan_file));
    Ok(exit::IN_SYNC)
}

fn completions(shell: super::CompletionShell) -> u8 {
    use clap::CommandFactory;
    let shell = match shell {
        super::CompletionShell::Bash => clap_complete::Shell::Bash,
        super::CompletionShell::Zsh => clap_complete::Shell::Zsh,
        super::CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "idsync", &mut buf);
    out!("{}", String::from_utf8_lossy(&buf));
    exit::IN_SYNC
}

/// The man page, from the same clap definitions as `--help`, so the two cannot drift.
fn man() -> Result<u8, Error> {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf).map_err(|source| Error::Io {
        what: "cannot render the man page".into(),
        source,
    })?;
    out!("{}", String::from_utf8_lossy(&buf));
    Ok(exit::IN_SYNC)
}

struct ApplyOpts {
    plan_file: Option<PathBuf>,
    approve: Vec<String>,
    /// `--reason`, for the audit lines of `--approve`.
    reason: Option<String>,
    yes: bool,
}

/// Whether two actions describe the same change (id and every field that matters,
/// including the W&B user it lands on).
fn same_change(a: &Action, b: &Action) -> bool {
    (a.id == b.id)
        && (a.kind, &a.user, &a.team, &a.role, &a.from, &a.to, &a.user_id)
            == (b.kind, &b.user, &b.team, &b.role, &b.from, &b.to, &b.user_id)
}

async fn apply(path: &Path, opts: ApplyOpts) -> Result<u8, Error> {
    let env = load_env(path)?;
    if env.config.ha.enabled {
        // Only the lease holder may apply; a manual apply beside it would be a second one.
        return Err(Error::Usage(
            "with [ha] enabled = true only the daemon that holds the leader lease applies: \
             review with `idsync plan`, release held actions with `idsync approve` (from any node), \
             and let the leader apply them at its next run"
                .into(),
        ));
    }
    let client = env.client()?;
    let mut store = env.open_store()?;
    let started = Utc::now();
    let run_id = new_run_id();
    let saved = match &opts.plan_file {
        Some(p) => Some(report::parse_plan_json(&read_file(p)?)?),
        None => None,
    };
    // Before reading, held until the run is recorded (also while the prompt waits): no other
    // run applies between this read and this apply.
    let lock = sync::lock_apply(&env.state_dir())?;
    let (dir, org, mut phases) = match read_both_showing(&env, &client).await {
        Ok(v) => v,
        Err(e) => {
            record(
                &mut *store,
                &run_id,
                "apply",
                started,
                "failure",
                BTreeMap::new(),
                Some(e.to_string()),
            )?;
            drop(lock);
            notify_after(&env, |n| {
                crate::notify::RunFacts::failed_early(&run_id, "apply", n.target(), &e.to_string())
            })
            .await;
            return Err(e);
        }
    };
    let plan_started = std::time::Instant::now();
    let mut state = store.load_plan_state()?;
    // A reviewed undo plan is checked against the undo derived fresh (audit log and both
    // sides now), never against a directory plan, which would not contain its actions.
    let undo_log = match saved.as_ref().and_then(|p| p.undo.as_ref()) {
        Some(u) => Some((u.run_id.clone(), super::undo::run_log(&env.state_dir(), &u.run_id)?)),
        None => None,
    };
    let fresh_plan = |state: &crate::plan::PlanState| match &undo_log {
        Some((rid, log)) => super::undo::undo_plan(&env, rid, log, &dir, &org, state, started),
        None => sync::plan_now(&env, &dir, &org, state, started),
    };
    let mut fresh = fresh_plan(&state);
    // `--approve` approvals are planned with in memory and stored only once the apply goes
    // ahead: an apply cancelled at the prompt leaves no approval for the daemon to use.
    let mut new_approvals = Vec::new();
    if !opts.approve.is_empty() {
        // With a reviewed plan, the approval binds to what the human reviewed there (its
        // guards and fingerprint), not to whatever holds the action now: a guard that
        // started holding it since (a suspicious read) still holds it.
        let reviewed = saved.as_ref().unwrap_or(&fresh);
        new_approvals = approvals_for(reviewed, &opts.approve, &env, &human())?;
        state.approvals.extend(new_approvals.iter().cloned());
        fresh = fresh_plan(&state);
    }
    phases.plan = Some(plan_started.elapsed());

    // With a reviewed plan, apply only what it still says unchanged.
    let mut to_apply = fresh.clone();
    let mut left_out = 0;
    let mut stale = 0;
    if let Some(saved) = &saved {
        let (kept, report) = reviewed_part(&fresh, saved);
        for a in &report.stale {
            let who = a.user.as_ref().map(|u| u.as_str()).or(a.team.as_deref()).unwrap_or("");
            // Re-applying a plan: what W&B already shows is done, not a surprise.
            if crate::plan::org_shows(&org, a) {
                errln!("already done: {} {} {who}: W&B already shows this change", a.id, a.kind);
            } else {
                errln!(
                    "changed since review: {} {} {who} is not in the fresh plan unchanged: dropped (plan again to review it)",
                    a.id,
                    a.kind
                );
            }
        }
        stale = report.stale.len();
        let from = opts.plan_file.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
        if report.unreviewed > 0 {
            errln!(
                "{} ready action(s) of the fresh plan are not in {from}: not applied (plan again to review them)",
                report.unreviewed
            );
        }
        if report.held_when_reviewed > 0 {
            errln!(
                "{} action(s) were held in {from} and are ready now without an approval: not applied (plan again to review them)",
                report.held_when_reviewed
            );
        }
        left_out = report.unreviewed + report.held_when_reviewed;
        to_apply.actions = kept;
    }

    out!(
        "{}",
        report::render(
            &to_apply,
            Format::Text,
            &RenderOptions {
                color: color_stdout(Format::Text),
                plan_file: None,
            }
        )
    );
    let ready = to_apply.ready().count();
    if ready > 0 && !opts.yes && std::io::stdin().is_terminal() {
        out!("Apply {ready} action(s) to {}? Only 'yes' is accepted: ", env.config.target.url);
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            outln!("Apply cancelled; nothing was changed (no approval was recorded).");
            return Ok(exit::CHANGES_PENDING);
        }
    }
    // Going ahead: what this run learned and approved is stored now, under the lock, and
    // the audit log says who approved what.
    store.add_approvals(&new_approvals)?;
    if !new_approvals.is_empty() {
        let plan_for_audit = saved.as_ref().unwrap_or(&fresh);
        audit_approvals(
            &env,
            &mut *store,
            "approve",
            &new_approvals,
            plan_for_audit,
            &run_id,
            "apply --approve",
            opts.reason.as_deref(),
        )?;
    }
    // An undo is no directory plan: its tombstones and baseline are not the directory's.
    if undo_log.is_none() {
        sync::persist_plan_state(&mut *store, &fresh, &dir, &env.policy)?;
    }

    let prepared = sync::Prepared {
        run_id,
        command: "apply".into(),
        actor: actor("apply"),
        started,
        directory: dir,
        org,
        fresh,
        phases,
        lock,
    };
    // From here on, Ctrl-C or SIGTERM lets the action in flight finish and starts no more.
    let stop = crate::daemon::stop_on_signals()?;
    let bar = super::progress::ApplyBar::new(to_apply.ready().count());
    let outcome = sync::execute(
        &env,
        &client,
        &mut *store,
        prepared,
        &to_apply,
        Some(stop),
        &bar,
        std::sync::Arc::new(crate::apply::AlwaysOpen),
    )
    .await;
    drop(bar);
    let outcome = outcome?;
    if outcome.stopped {
        errln!("interrupted: {}", outcome.error.as_deref().unwrap_or("stopped by a signal"));
    }
    let held = to_apply.held().count();
    if let Some(report) = outcome.report.as_ref() {
        print_results(report, held, stale, left_out);
    }
    // The counts alone may all be zero: say why this run still exits 3.
    if let Some(why) = &to_apply.source.suspicious {
        outln!("suspicious directory read, nothing from it stored: {why}");
    }
    // The run is recorded, the lock released and the results shown: a message now (or a
    // webhook that fails) cannot change any of it.
    notify_after(&env, |n| crate::notify::RunFacts::of(&outcome, "apply", n.target())).await;
    // Ready actions left out of a reviewed plan are still pending: never "in sync".
    Ok(match outcome.result {
        sync::RunResult::Success if left_out > 0 => exit::CHANGES_PENDING,
        r => exit::of_run(r),
    })
}

/// Sends the `[notify]` message a finished run is worth, if any (bounded in time); a
/// failure to send is a warning on stderr, never the command's error or exit code.
async fn notify_after(env: &Env, facts: impl FnOnce(&crate::notify::Notifier) -> crate::notify::RunFacts) {
    let Some(n) = crate::notify::Notifier::of(env) else { return };
    let d = n.after_run(&facts(&n)).await;
    match (&d, d.describe()) {
        (crate::notify::Delivery::Failed { .. }, Some(line)) => errln!("warning: {line}"),
        (_, Some(line)) => errln!("{line}"),
        (_, None) => {}
    }
}

/// What `apply --plan` left out of the fresh plan.
#[derive(Debug, Default)]
struct ReviewReport<'a> {
    /// Ready in the reviewed plan, not in the fresh one unchanged.
    stale: Vec<&'a Action>,
    /// Ready in the fresh plan, absent from the reviewed one (or changed).
    unreviewed: usize,
    /// Held in the reviewed plan and ready now without an approval.
    held_when_reviewed: usize,
}

/// The actions of `fresh` that `apply --plan` may apply: a ready action the reviewed plan
/// also had unchanged and ready, or held there and released now by an approval. The held
/// actions of `fresh` are kept (they are reported, not applied).
fn reviewed_part<'a>(fresh: &Plan, saved: &'a Plan) -> (Vec<Action>, ReviewReport<'a>) {
    let reviewed: BTreeMap<&ActionId, &Action> = saved.actions.iter().map(|a| (&a.id, a)).collect();
    let mut report = ReviewReport {
        stale: saved.ready().filter(|a| !fresh.ready().any(|f| same_change(f, a))).collect(),
        ..ReviewReport::default()
    };
    let mut kept = Vec::new();
    for f in &fresh.actions {
        if !f.is_ready() {
            kept.push(f.clone());
            continue;
        }
        match reviewed.get(&f.id).filter(|r| same_change(f, r)) {
            None => report.unreviewed += 1,
            Some(r) if r.is_ready() || f.approved => kept.push(f.clone()),
            Some(_) => report.held_when_reviewed += 1,
        }
    }
    (kept, report)
}

/// The per-action results, then one line that counts everything the run left: what was
/// applied, failed, skipped, held for a human, left out as stale or unreviewed (apply --plan).
pub(crate) fn print_results(report: &apply::ApplyReport, held: usize, stale: usize, unreviewed: usize) {
    if !report.results.is_empty() {
        outln!("\nApplied:");
    }
    for (a, r) in &report.results {
        let mark = match r {
            ActionResult::Applied | ActionResult::AlreadyDone => "ok  ",
            ActionResult::Failed(_) => "FAIL",
            ActionResult::Unknown(_) => "UNKN",
            ActionResult::Skipped(_) => "skip",
            ActionResult::NotApplied(_) => "n/a ",
        };
        let who = a.user.as_ref().map(|u| u.to_string()).unwrap_or_default();
        let team = a.team.as_deref().map(|t| format!(" team {t}")).unwrap_or_default();
        outln!("  {mark} {} {} {who}{team}: {}", a.id, a.kind, apply::describe(r));
    }
    let mut extra = String::new();
    if unreviewed > 0 {
        extra.push_str(&format!(", {unreviewed} not reviewed"));
    }
    if report.unknown() > 0 {
        extra.push_str(&format!(
            ", {} with an unknown outcome (the next run settles them against W&B)",
            report.unknown()
        ));
    }
    if report.not_applied() > 0 {
        extra.push_str(&format!(", {} interrupted earlier and not applied", report.not_applied()));
    }
    outln!(
        "{} applied, {} failed, {} skipped, {held} held, {stale} stale{extra}",
        report.applied(),
        report.failed(),
        report.skipped()
    );
}

/// Builds approvals for `ids` (all overridable held actions when empty), refusing ids
/// that are not held or that a non-overridable guard holds.
fn approvals_for(plan: &Plan, ids: &[String], env: &Env, by: &str) -> Result<Vec<Approval>, Error> {
    // Whole seconds: the store, the audit log and `approvals` then show the same instant.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0);
    // Config bounds durations (a century at most), so this cannot overflow; saturate anyway.
    let ttl = chrono::Duration::from_std(env.config.guards.approval_ttl.0).unwrap_or(chrono::Duration::hours(24));
    let expires_at = now.checked_add_signed(ttl).unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
    let chosen: Vec<&Action> = if ids.is_empty() {
        plan.held().filter(|a| a.overridable()).collect()
    } else {
        let mut out = Vec::new();
        for id in ids {
            let a = plan
                .actions
                .iter()
                .find(|a| a.id.as_str() == id)
                .ok_or_else(|| Error::Usage(format!("action {id} is not in the plan: plan again and use an id it shows")))?;
            if a.is_ready() {
                return Err(Error::Usage(format!("action {id} is not held: nothing to approve")));
            }
            if !a.overridable() {
                return Err(Error::Usage(format!(
                    "action {id} is held by {} and cannot be approved: {}",
                    a.guard.map(|g| g.to_string()).unwrap_or_default(),
                    a.held_reason.clone().unwrap_or_default()
                )));
            }
            out.push(a);
        }
        out
    };
    chosen
        .into_iter()
        .map(|a| {
            if a.fingerprint.is_empty() {
                return Err(Error::Usage(format!(
                    "action {} carries no fingerprint of the reviewed change (a plan saved by an older idsync): plan again and approve from the new plan",
                    a.id
                )));
            }
            Ok(Approval::of(a, now, expires_at, by))
        })
        .collect()
}

/// Appends one `approve` or `revoke` line per approval to the audit log: who (the actor
/// and the human), what, over which guards, until when, and the human's reason. `plan`,
/// when given, adds the hold the human saw to each line's detail.
#[allow(clippy::too_many_arguments)]
fn audit_approvals(
    env: &Env,
    store: &mut dyn StateBackend,
    event: &str,
    approvals: &[Approval],
    plan: &Plan,
    run_id: &str,
    command: &str,
    reason: Option<&str>,
) -> Result<(), Error> {
    let mut log = AuditLog::open(&env.state_dir())?;
    let (who, by) = (actor(command), human());
    for a in approvals {
        let detail = plan
            .action(&a.action_id)
            .and_then(|x| x.held_reason.as_ref().map(|why| format!("held: {why}")));
        let rec = AuditRecord::approval(event, a, run_id, &who, &by, reason.unwrap_or(""), detail);
        log.append(&rec)?;
        store.record_audit(&rec)?;
    }
    Ok(())
}

fn approve(path: &Path, plan_file: &Path, ids: &[String], reason: Option<&str>) -> Result<u8, Error> {
    let env = load_env(path)?;
    let plan = report::parse_plan_json(&read_file(plan_file)?)?;
    let approvals = approvals_for(&plan, ids, &env, &human())?;
    if approvals.is_empty() {
        outln!("No held action in {} can be approved.", plan_file.display());
        return Ok(exit::IN_SYNC);
    }
    let line = |a: &Approval| {
        let act = plan.action(&a.action_id);
        let guards: Vec<&str> = a.guards.iter().map(|g| g.as_str()).collect();
        format!(
            "{} {} {} (held by {}) until {}",
            a.action_id,
            act.map(|x| x.kind.as_str()).unwrap_or(""),
            act.and_then(|x| x.user.as_ref().map(|u| u.as_str()).or(x.team.as_deref()))
                .unwrap_or(""),
            guards.join(", "),
            a.expires_at.format("%Y-%m-%dT%H:%M:%SZ")
        )
    };
    // Approving every held action at once is the big hammer: on a terminal, say what it
    // releases and ask first.
    if ids.is_empty() && std::io::stdin().is_terminal() {
        outln!("This approves every overridable held action of {}:", plan_file.display());
        for a in &approvals {
            outln!("  {}", line(a));
        }
        out!("Approve these {} action(s)? Only 'yes' is accepted: ", approvals.len());
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            outln!("Nothing approved.");
            return Ok(exit::IN_SYNC);
        }
    }
    let mut store = env.open_store()?;
    store.add_approvals(&approvals)?;
    audit_approvals(&env, &mut *store, "approve", &approvals, &plan, &new_run_id(), "approve", reason)?;
    for a in &approvals {
        outln!("approved {}", line(a));
    }
    outln!(
        "{} approval(s) recorded. The next `idsync apply` (or daemon run) applies them if they are still in the plan unchanged.",
        approvals.len()
    );
    Ok(exit::IN_SYNC)
}

/// The approvals that are pending at `now`: unexpired (a used-up one is gone already).
fn pending_approvals(store: &dyn StateBackend, now: chrono::DateTime<Utc>) -> Result<Vec<Approval>, Error> {
    Ok(store.approvals()?.into_iter().filter(|a| a.expires_at > now).collect())
}

/// `idsync approvals`: read-only, like `status`.
fn approvals(path: &Path, format: TextOrJson) -> Result<u8, Error> {
    use crate::report::status::{render_approvals, ApprovalsReport, StatusApproval};
    let env = load_env(path)?;
    let mut r = ApprovalsReport {
        state_dir: env.state_dir().display().to_string(),
        store_exists: false,
        approvals: Vec::new(),
    };
    if let Some(store) = env.open_store_read_only()? {
        r.store_exists = true;
        r.approvals = pending_approvals(&*store, Utc::now())?.iter().map(StatusApproval::of).collect();
    }
    super::write_rendered(&render_approvals(&r, format));
    Ok(exit::IN_SYNC)
}

/// `idsync revoke`: under the apply lock (no run consumes or applies an approval meanwhile),
/// all or nothing, audited.
fn revoke(path: &Path, ids: &[String], reason: Option<&str>) -> Result<u8, Error> {
    let env = load_env(path)?;
    let state_dir = env.state_dir();
    // No store, no approval: say so without creating one.
    if !state_dir.join(crate::state::DB_FILE).is_file() {
        return Err(Error::Usage(format!(
            "no pending approval for {}: there is no state store in {} yet (`idsync approvals` lists what can be revoked)",
            ids.join(", "),
            state_dir.display()
        )));
    }
    let mut store = env.open_store()?;
    let _lock = sync::lock_apply(&state_dir)?;
    let now = Utc::now();
    let stored = store.approvals()?;
    let mut wanted: Vec<ActionId> = Vec::new();
    for id in ids {
        let id = ActionId(id.trim().to_string());
        match stored.iter().find(|a| a.action_id == id) {
            None => {
                return Err(Error::Usage(format!(
                    "no pending approval for {id}: nothing was revoked (`idsync approvals` lists the pending ones)"
                )))
            }
            Some(a) if a.expires_at <= now => {
                return Err(Error::Usage(format!(
                    "the approval of {id} expired at {}: it releases nothing already; nothing was revoked",
                    a.expires_at.format("%Y-%m-%dT%H:%M:%SZ")
                )))
            }
            Some(_) if wanted.contains(&id) => {}
            Some(_) => wanted.push(id),
        }
    }
    let revoked = store.revoke_approvals(&wanted)?;
    let mut log = AuditLog::open(&state_dir)?;
    let (who, by, run_id) = (actor("revoke"), human(), new_run_id());
    for a in &revoked {
        let rec = AuditRecord::approval("revoke", a, &run_id, &who, &by, reason.unwrap_or(""), None);
        log.append(&rec)?;
        store.record_audit(&rec)?;
        outln!("revoked {}", report::status::approval_row(&report::status::StatusApproval::of(a)));
    }
    outln!(
        "{} approval(s) withdrawn: their actions stay held until approved again.",
        revoked.len()
    );
    Ok(exit::IN_SYNC)
}

/// `idsync state migrate --to postgres`: the SQLite state into the configured database.
fn state_migrate(path: &Path, replace: bool) -> Result<u8, Error> {
    let env = load_env(path)?;
    let Some(url) = env.config.state_url(&env.base_dir)? else {
        return Err(Error::Usage(
            "the config's [state] backend is \"sqlite\": set backend = \"postgres\" and url_file (or url_env) to the target database first"
                .into(),
        ));
    };
    let state_dir = env.state_dir();
    if !state_dir.join(crate::state::DB_FILE).is_file() {
        return Err(Error::Usage(format!(
            "there is no SQLite state at {} to migrate: check daemon.state_dir (a new install needs no migration)",
            state_dir.join(crate::state::DB_FILE).display()
        )));
    }
    // No apply may change the SQLite state while it is copied.
    let _lock = sync::lock_apply(&state_dir)?;
    let ca_file = env.config.state.ca_file.as_deref().map(|f| env.resolve(f));
    let copied = crate::state::sqlite_to_postgres(&state_dir, url.expose(), ca_file.as_deref(), replace)?;
    let target = crate::state::PgStore::describe_url(url.expose());
    outln!("copied {} into {target}:", state_dir.join(crate::state::DB_FILE).display());
    for (table, n) in &copied.rows {
        outln!("  {table}: {n}");
    }
    outln!(
        "the SQLite file is unchanged; idsync now uses {target} (the audit log stays in {})",
        state_dir.display()
    );
    Ok(exit::IN_SYNC)
}

fn status(path: &Path, format: TextOrJson) -> Result<u8, Error> {
    use crate::report::status::{StatusApproval, StatusHa, StatusReport, StatusRun, StatusUnsettled};
    let env = load_env(path)?;
    let mut r = StatusReport {
        state_dir: env.state_dir().display().to_string(),
        store_exists: false,
        runs: Vec::new(),
        tombstones: Vec::new(),
        approvals: Vec::new(),
        unsettled: Vec::new(),
        ha: None,
    };
    // Read-only, like `plan`: a status check never creates or migrates the store.
    if let Some(store) = env.open_store_read_only()? {
        let now = Utc::now();
        r.store_exists = true;
        if env.config.ha.enabled {
            let lease = store.ha_lease()?;
            r.ha = Some(StatusHa {
                leader: lease.as_ref().map(|(n, _, _)| n.clone()),
                token: lease.as_ref().map(|(_, t, _)| *t),
                valid_for_seconds: lease.as_ref().map(|(_, _, d)| d.as_secs()),
            });
        }
        r.runs = store
            .last_runs(10)?
            .into_iter()
            .map(|x| StatusRun {
                run_id: x.run_id,
                command: x.command,
                started_at: x.started_at,
                finished_at: x.finished_at,
                result: x.result,
                summary: x.summary,
                error: x.error,
            })
            .collect();
        r.tombstones = store.tombstones()?;
        r.approvals = pending_approvals(&*store, now)?.iter().map(StatusApproval::of).collect();
        r.unsettled = store
            .journal_incomplete()?
            .into_iter()
            .map(|e| StatusUnsettled {
                run_id: e.run_id,
                action_id: e.action.id.to_string(),
                kind: e.action.kind.as_str().to_string(),
                user: e.action.user.as_ref().map(|u| u.to_string()),
                team: e.action.team.clone(),
                begun_at: e.begun_at,
                state: if e.unknown.is_some() { "unknown" } else { "interrupted" }.to_string(),
                detail: e.unknown,
            })
            .collect();
    }
    super::write_rendered(&report::status::render(&r, format));
    Ok(exit::IN_SYNC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{SourceSummary, TargetSummary};

    fn empty_plan() -> Plan {
        Plan {
            version: 1,
            generated_at: Utc::now(),
            source: SourceSummary::default(),
            target: TargetSummary::default(),
            summary: BTreeMap::new(),
            actions: Vec::new(),
            tombstones: Vec::new(),
            skipped: Vec::new(),
            roster_before: Vec::new(),
            roster_after: Vec::new(),
            identity_pending: Default::default(),
            undo: None,
        }
    }

    #[test]
    fn a_suspicious_read_is_never_in_sync() {
        let mut p = empty_plan();
        assert_eq!(plan_exit_code(&p), exit::IN_SYNC);
        // Nothing to do, but the read looks wrong: a human must look (SPEC §2).
        p.source.suspicious = Some("the directory shrank".into());
        assert_eq!(plan_exit_code(&p), exit::HELD);
    }
}
