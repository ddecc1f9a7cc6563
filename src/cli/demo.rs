//! `idsync demo` and `idsync sandbox`: the self-contained tour, and the sandbox server.
//!
//! The demo runs the real pipeline (config loading, LDIF source, SCIM client over HTTP,
//! plan, guards, apply with journal and audit log) against the bundled sandbox on
//! loopback, with bundled example data, in a temporary directory.

use chrono::Utc;

use super::commands::{new_run_id, plan_exit_code, print_results};
use super::{exit, SandboxArgs};
use crate::apply::{self, ApplyContext};
use crate::config::HumanDuration;
use crate::error::Error;
use crate::plan::Deployment;
use crate::report::{self, Format, RenderOptions};
use crate::sandbox::{self, SandboxOptions, SandboxOrg};
use crate::state::{actor, AuditLog};
use crate::sync::{self, Env};

const DEMO_LDIF: &str = include_str!("../../examples/directory.ldif");
const DEMO_ORG: &str = include_str!("../../examples/sandbox-org.json");
const DEMO_KEY: &str = "demo-org-service-account-key";

fn demo_config(url: &str) -> String {
    format!(
        r#"# idsync demo configuration (generated)
[source]
kind = "ldif"
path = "directory.ldif"

[source.users]
base = "ou=people,dc=example,dc=com"

[source.groups]
base = "ou=groups,dc=example,dc=com"

[target]
url = "{url}"
deployment = "saas"
api_key_file = "wandb-api-key"
max_concurrency = 4

[policy]
managed_domains = ["example.com"]
ignore_users = ["breakglass@example.com"]
auto_add = true
default_org_role = "member"
deprovision = "deactivate"
grace_period = "0s"

[[policy.org_roles]]
group = "cn=wandb-admins,ou=groups,dc=example,dc=com"
role = "admin"

[[policy.teams]]
team = "ml-research"
group = "cn=ml-research,ou=groups,dc=example,dc=com"
role = "member"

[[policy.teams]]
team = "ml-research"
group = "cn=ml-leads,ou=groups,dc=example,dc=com"
role = "admin"

[[policy.teams]]
team = "data-platform"
group = "cn=data-platform,ou=groups,dc=example,dc=com"
role = "member"

[guards]
max_deprovision_percent = 20
pipeline_key_owners = ["ci-bot@example.com"]

[daemon]
state_dir = "state"
"#
    )
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

pub async fn run(keep: bool) -> Result<u8, Error> {
    let org: SandboxOrg = serde_json::from_str(DEMO_ORG).map_err(|e| Error::Usage(format!("bundled sandbox org is invalid: {e}")))?;
    let opts = SandboxOptions {
        api_key: DEMO_KEY.into(),
        deployment: Deployment::Saas,
        ..SandboxOptions::default()
    };
    let addr = "127.0.0.1:0".parse().map_err(|_| Error::Usage("bad loopback address".into()))?;
    let sb = sandbox::spawn(opts, org, addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot start the W&B sandbox on loopback: {e}")))?;
    let tmp = tempdir()?;
    let dir = tmp.path();
    std::fs::write(dir.join("directory.ldif"), DEMO_LDIF).map_err(io(format!("cannot write {}", dir.display())))?;
    std::fs::write(dir.join("wandb-api-key"), format!("{DEMO_KEY}\n")).map_err(io(format!("cannot write {}", dir.display())))?;
    let cfg_path = dir.join("idsync.toml");
    std::fs::write(&cfg_path, demo_config(&sb.url())).map_err(io(format!("cannot write {}", cfg_path.display())))?;

    outln!(
        "idsync demo: a W&B sandbox is serving on {} (SaaS semantics), with an example org.",
        sb.url()
    );
    outln!("The directory is an example LDIF (a few dozen people, nested groups, an admin group).");
    outln!("Config: {}\n", cfg_path.display());

    let env = Env::load(&cfg_path)?;
    let code = tour(&env).await;
    sb.shutdown().await;
    if keep {
        let kept = tmp.keep();
        outln!(
            "\nKept {} (config, directory, state store, audit log). The sandbox has stopped: \
             `idsync sandbox` serves a fresh one.",
            kept.display()
        );
    } else {
        outln!(
            "\n{} (config, state store, audit log) is deleted now; `idsync demo --keep` keeps it.",
            dir.display()
        );
    }
    code
}

async fn tour(env: &Env) -> Result<u8, Error> {
    let client = env.client()?;
    let mut store = env.open_store()?;
    let color = super::commands::color_stdout(Format::Text);

    outln!("== 1. idsync plan (dry run) ==================================================\n");
    let (dir, org, _) = sync::read_both(env, &client).await?;
    let state = store.load_plan_state()?;
    let plan = sync::plan_now(env, &dir, &org, &state, Utc::now());
    sync::persist_plan_state(&mut *store, &plan, &dir, &env.policy)?;
    super::write_rendered(&report::render(&plan, Format::Text, &RenderOptions { color, plan_file: None }));
    outln!(
        "\n(exit code would be {}: some actions are held for a human)\n",
        plan_exit_code(&plan)
    );

    outln!("== 2. idsync apply --yes =====================================================\n");
    let mut audit = AuditLog::open(&env.state_dir())?;
    let result = apply::apply(
        &plan,
        ApplyContext {
            client: &client,
            store: &mut *store,
            audit: &mut audit,
            policy: &env.policy,
            directory: &dir,
            org: &org,
            run_id: new_run_id(),
            actor: actor("demo"),
            max_concurrency: env.config.target.max_concurrency,
            stop: None,
            progress: &apply::Quiet,
            gate: std::sync::Arc::new(apply::AlwaysOpen),
        },
    )
    .await?;
    print_results(&result, plan.held().count(), 0, 0);

    outln!("\n== 3. idsync plan again ======================================================\n");
    let (dir, org, _) = sync::read_both(env, &client).await?;
    let state = store.load_plan_state()?;
    let again = sync::plan_now(env, &dir, &org, &state, Utc::now());
    out!(
        "{}",
        report::render(&again, Format::Text, &RenderOptions { color, plan_file: None })
    );
    let ready = again.ready().count();
    outln!();
    if ready == 0 {
        outln!("The org is in sync: nothing left to apply. The held actions wait for `idsync approve`.");
    } else {
        outln!("{ready} action(s) still ready: the org did not converge (this is a bug; please report it).");
    }
    Ok(if ready == 0 && result.failed() == 0 {
        exit::IN_SYNC
    } else {
        exit::ERROR
    })
}

fn tempdir() -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix("idsync-demo-")
        .tempdir()
        .map_err(io("cannot create a temporary directory".into()))
}

pub async fn sandbox(args: SandboxArgs) -> Result<u8, Error> {
    let org: SandboxOrg = match &args.org {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(io(format!("cannot read {}", p.display())))?;
            serde_json::from_str(&text).map_err(|e| Error::Usage(format!("{}: not a sandbox org file: {e}", p.display())))?
        }
        None => serde_json::from_str(DEMO_ORG).map_err(|e| Error::Usage(format!("bundled sandbox org is invalid: {e}")))?,
    };
    let deployment = match args.deployment.as_str() {
        "saas" => Deployment::Saas,
        "dedicated" => Deployment::Dedicated,
        "self-managed" => Deployment::SelfManaged,
        other => {
            return Err(Error::Usage(format!(
                "--deployment {other:?}: expected saas, dedicated or self-managed"
            )))
        }
    };
    let latency = HumanDuration::parse(&args.latency).map_err(|e| Error::Usage(format!("--latency: {e}")))?;
    for (name, v) in [
        ("--fail-rate", args.fail_rate),
        ("--throttle-rate", args.throttle_rate),
        ("--malformed-rate", args.malformed_rate),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(Error::Usage(format!("{name} {v}: expected a share between 0 and 1")));
        }
    }
    let opts = SandboxOptions {
        api_key: args.api_key,
        deployment,
        server_version: args.server_version,
        scim_path: args.scim_path,
        latency: latency.0,
        fail_rate: args.fail_rate,
        throttle_rate: args.throttle_rate,
        malformed_rate: args.malformed_rate,
        seed: args.seed,
        seat_limit: args.seat_limit,
        activity: !args.no_activity,
        service_accounts: args.service_accounts,
        honour_paging: args.honour_paging,
        ..SandboxOptions::default()
    };
    let key_hint = format!(
        "clients authenticate with API key {:?} (--api-key; Basic \":KEY\" or Bearer)",
        opts.api_key
    );
    let scim = opts.scim_path.trim_end_matches('/').to_string();
    // The error already names the sandbox: printed once, not "sandbox: sandbox: ...".
    sandbox::serve_forever_with(opts, org, args.listen, |local| {
        errln!("W&B sandbox on http://{local}{scim} (Ctrl-C stops it); {key_hint}. State: GET /_sandbox/state");
    })
    .await
    .map_err(|e| Error::Usage(e.to_string()))?;
    Ok(exit::IN_SYNC)
}
