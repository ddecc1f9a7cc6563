//! The shell's shared steps: load the config, read both sides, plan, persist what the plan
//! learned. Commands, the demo and the daemon all go through here, so they plan alike.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::config::{self, Config, Loaded};
use crate::error::Error;
use crate::model::{DirectorySnapshot, Email, OrgSnapshot};
use crate::plan::{self, Plan, PlanInput, PlanState, Policy};
use crate::source;
use crate::state::StateStore;
use crate::target::WandbClient;

/// A loaded, validated configuration with everything derived from it.
pub struct Env {
    pub config: Config,
    pub path: PathBuf,
    pub warnings: Vec<String>,
    pub policy: Policy,
    /// The config file's directory: relative paths in the config are resolved against it.
    pub base_dir: PathBuf,
}

impl Env {
    pub fn load(path: &Path) -> Result<Env, Error> {
        Self::from_loaded(config::load(path)?)
    }

    pub fn from_loaded(loaded: Loaded) -> Result<Env, Error> {
        let Loaded { config, path, warnings } = loaded;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let inventory = config.load_inventory(&base_dir)?;
        let policy = config.policy(inventory.as_ref())?;
        Ok(Env {
            config,
            path,
            warnings,
            policy,
            base_dir,
        })
    }

    /// `daemon.state_dir`, relative paths against the config file's directory.
    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.config.daemon.state_dir)
    }

    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn client(&self) -> Result<WandbClient, Error> {
        let key = self.config.target_api_key(&self.base_dir)?;
        Ok(WandbClient::new(&self.config.target, key)?)
    }

    pub fn open_store(&self) -> Result<StateStore, Error> {
        Ok(StateStore::open(&self.state_dir())?)
    }
}

/// Reads the directory and the org at once. Either failing fails the whole run.
pub async fn read_both(env: &Env, client: &WandbClient) -> Result<(DirectorySnapshot, OrgSnapshot), Error> {
    let (dir, org) = tokio::join!(source::read_directory(&env.config.source, &env.base_dir), client.snapshot());
    Ok((dir?, org?))
}

/// Plans against the stored state.
pub fn plan_now(env: &Env, dir: &DirectorySnapshot, org: &OrgSnapshot, state: &PlanState, now: DateTime<Utc>) -> Plan {
    plan::plan(PlanInput {
        directory: dir,
        org,
        policy: &env.policy,
        state,
        now,
    })
}

/// Stores what a plan learned: tombstone clocks, and the directory size and anchors when
/// the read looks healthy (a suspicious read never becomes the new baseline).
pub fn persist_plan_state(store: &mut StateStore, plan: &Plan, dir: &DirectorySnapshot) -> Result<(), Error> {
    store.replace_tombstones(&plan.tombstones)?;
    if plan.source.suspicious.is_none() {
        let anchors = dir
            .people
            .iter()
            .filter_map(|p| Some((p.anchor.clone(), Email::parse(p.email.as_deref()?)?)))
            .collect();
        store.record_good_read(plan.source.usable_enabled, &anchors)?;
    }
    Ok(())
}
