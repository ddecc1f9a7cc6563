//! The configuration file's shape (SPEC §3). Key names here are the contract.
//!
//! Every struct rejects unknown keys; defaults match the spec. Loading, validation and
//! error messages live in `config/mod.rs`.

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    pub target: TargetConfig,
    pub policy: PolicyConfig,
    #[serde(default)]
    pub guards: GuardsConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub report: ReportConfig,
    /// Optional: post a message to a chat or ticket webhook after runs that need a human.
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub ha: HaConfig,
}

/// `[state]`: where the state lives and what it keeps.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default)]
    pub backend: StateBackendKind,
    /// `backend = "postgres"`: a libpq URL or key=value string, a secret (it may hold the
    /// password), from a file or an environment variable.
    pub url_file: Option<String>,
    pub url_env: Option<String>,
    /// `backend = "postgres"`: the CA certificates (PEM) to trust for TLS instead of the
    /// system's, for a server with a private CA.
    pub ca_file: Option<String>,
    /// Finished runs, ended journal entries and expired approvals older than this are
    /// deleted after each apply (the audit log is never pruned).
    #[serde(default = "default_retention")]
    pub retention: HumanDuration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackendKind::default(),
            url_file: None,
            url_env: None,
            ca_file: None,
            retention: default_retention(),
        }
    }
}

/// `[state] backend`: SQLite in `daemon.state_dir` (embedded, the default) or PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackendKind {
    #[default]
    Sqlite,
    Postgres,
}

/// `[ha]`: several daemons sharing one PostgreSQL state, one leader applying (SPEC §8,
/// `daemon/ha.rs`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: HumanDuration,
    #[serde(default)]
    pub node_name: String,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            enabled: false,
            lease_ttl: default_lease_ttl(),
            node_name: String::new(),
        }
    }
}

fn default_lease_ttl() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn default_retention() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(90 * 86_400))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Ldap,
    Scim,
    Okta,
    Entra,
    Ldif,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Ldap => "ldap",
            SourceKind::Scim => "scim",
            SourceKind::Okta => "okta",
            SourceKind::Entra => "entra",
            SourceKind::Ldif => "ldif",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LdapDialect {
    #[default]
    Openldap,
    ActiveDirectory,
    #[serde(rename = "389ds")]
    Ds389,
}

/// `[source]`: one flat table whose keys depend on `kind`; validation checks that the
/// keys a kind needs are there and that no other kind's keys are set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    // ldap, scim, okta
    pub url: Option<String>,
    // ldap
    #[serde(default)]
    pub start_tls: bool,
    pub ca_file: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<String>,
    pub bind_password_env: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default)]
    pub dialect: LdapDialect,
    // scim, okta
    pub token_file: Option<String>,
    pub token_env: Option<String>,
    // entra
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub client_secret_env: Option<String>,
    pub authority: Option<String>,
    pub graph_url: Option<String>,
    // ldif
    pub path: Option<String>,
    #[serde(default)]
    pub users: LdapUsersConfig,
    #[serde(default)]
    pub groups: LdapGroupsConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LdapUsersConfig {
    #[serde(default)]
    pub base: String,
    #[serde(default = "default_users_filter")]
    pub filter: String,
    #[serde(default = "default_email_attr")]
    pub email_attr: String,
    #[serde(default = "default_username_attr")]
    pub username_attr: String,
    #[serde(default = "default_name_attr")]
    pub name_attr: String,
    #[serde(default = "default_anchor_attr")]
    pub anchor_attr: String,
}

impl Default for LdapUsersConfig {
    fn default() -> Self {
        LdapUsersConfig {
            base: String::new(),
            filter: default_users_filter(),
            email_attr: default_email_attr(),
            username_attr: default_username_attr(),
            name_attr: default_name_attr(),
            anchor_attr: default_anchor_attr(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LdapGroupsConfig {
    #[serde(default)]
    pub base: String,
    #[serde(default = "default_groups_filter")]
    pub filter: String,
    #[serde(default = "default_member_attr")]
    pub member_attr: String,
    #[serde(default = "default_name_attr")]
    pub name_attr: String,
    #[serde(default = "yes")]
    pub nested: bool,
    /// Active Directory only: resolve nested membership on the server with the in-chain
    /// matching rule (one query per group) instead of reading member lists.
    #[serde(default)]
    pub in_chain: bool,
}

impl Default for LdapGroupsConfig {
    fn default() -> Self {
        LdapGroupsConfig {
            base: String::new(),
            filter: default_groups_filter(),
            member_attr: default_member_attr(),
            name_attr: default_name_attr(),
            nested: true,
            in_chain: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Wandb,
}

pub use crate::plan::{Deployment, DeprovisionMode, TeamMembershipMode};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    #[serde(default = "default_target_kind")]
    pub kind: TargetKind,
    #[serde(default = "default_wandb_url")]
    pub url: String,
    #[serde(default = "default_scim_path")]
    pub scim_path: String,
    #[serde(default = "default_deployment")]
    pub deployment: Deployment,
    pub server_version: Option<String>,
    /// Empty: org service account, Basic ":KEY".
    #[serde(default)]
    pub username: String,
    /// `basic` (default) or `bearer` (SaaS, and Dedicated/Self-Managed 0.79.0+).
    #[serde(default)]
    pub auth: TargetAuth,
    pub api_key_file: Option<String>,
    pub api_key_env: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetAuth {
    #[default]
    Basic,
    Bearer,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub managed_domains: Vec<String>,
    #[serde(default)]
    pub ignore_users: Vec<String>,
    #[serde(default = "yes")]
    pub auto_add: bool,
    pub auto_add_group: Option<String>,
    #[serde(default = "default_org_role")]
    pub default_org_role: String,
    #[serde(default = "default_deprovision")]
    pub deprovision: DeprovisionMode,
    #[serde(default = "default_grace")]
    pub grace_period: HumanDuration,
    #[serde(default = "zero")]
    pub disabled_grace_period: HumanDuration,
    /// How long after a deprovision a returning person gets their teams and roles back;
    /// "0s" turns restore on return off.
    #[serde(default = "default_restore_window")]
    pub restore_window: HumanDuration,
    #[serde(default = "default_team_membership")]
    pub team_membership: TeamMembershipMode,
    #[serde(default)]
    pub org_roles: Vec<OrgRoleConfig>,
    #[serde(default)]
    pub teams: Vec<TeamConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrgRoleConfig {
    pub group: String,
    pub role: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    pub team: String,
    pub group: String,
    #[serde(default = "default_team_role")]
    pub role: String,
    #[serde(default)]
    pub create: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardsConfig {
    #[serde(default = "one")]
    pub min_org_admins: usize,
    #[serde(default = "one")]
    pub min_team_admins: usize,
    #[serde(default = "default_max_deprovisions")]
    pub max_deprovisions: usize,
    #[serde(default = "default_max_deprovision_percent")]
    pub max_deprovision_percent: u32,
    #[serde(default = "default_max_team_removals")]
    pub max_team_removals: usize,
    #[serde(default = "default_max_source_shrink_percent")]
    pub max_source_shrink_percent: u32,
    #[serde(default = "default_source_health_window")]
    pub source_health_window: HumanDuration,
    #[serde(default)]
    pub max_seats: usize,
    #[serde(default)]
    pub pipeline_key_owners: Vec<String>,
    pub pipeline_inventory: Option<String>,
    #[serde(default = "default_approval_ttl")]
    pub approval_ttl: HumanDuration,
}

impl Default for GuardsConfig {
    fn default() -> Self {
        GuardsConfig {
            min_org_admins: 1,
            min_team_admins: 1,
            max_deprovisions: default_max_deprovisions(),
            max_deprovision_percent: default_max_deprovision_percent(),
            max_team_removals: default_max_team_removals(),
            max_source_shrink_percent: default_max_source_shrink_percent(),
            source_health_window: default_source_health_window(),
            max_seats: 0,
            pipeline_key_owners: Vec::new(),
            pipeline_inventory: None,
            approval_ttl: default_approval_ttl(),
        }
    }
}

/// `pipelines.toml`: `[[pipeline]] owner, team, name`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineInventory {
    #[serde(default)]
    pub pipeline: Vec<PipelineEntry>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineEntry {
    pub owner: String,
    pub team: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default = "default_schedule")]
    pub schedule: String,
    #[serde(default = "yes")]
    pub run_on_start: bool,
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            schedule: default_schedule(),
            run_on_start: true,
            listen: default_listen(),
            state_dir: default_state_dir(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

/// `[report]`: settings of `idsync report seats`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Monthly price of one seat per org role; no cost estimate when absent.
    pub seat_price: Option<SeatPriceConfig>,
    /// Active users whose last activity is more than this many days ago are inactive.
    #[serde(default = "default_inactive_days")]
    pub inactive_days: u32,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            seat_price: None,
            inactive_days: default_inactive_days(),
        }
    }
}

impl ReportConfig {
    /// The prices as the seat report uses them (`None` without `seat_price` or `member`,
    /// which validation rejects).
    pub fn seat_prices(&self) -> Option<crate::report::seats::SeatPrices> {
        let p = self.seat_price.as_ref()?;
        Some(crate::report::seats::SeatPrices {
            member: p.member?,
            admin: p.admin,
            viewer: p.viewer,
        })
    }
}

/// `[report] seat_price = { member = 50, viewer = 10, admin = 50 }`: `member` is required,
/// admin and viewer seats cost the member price unless set.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeatPriceConfig {
    pub member: Option<f64>,
    pub viewer: Option<f64>,
    pub admin: Option<f64>,
}

/// `[notify]`: one webhook message after a run in which the set of held actions changed,
/// the first failure after a success, or something was applied (each as `on` allows).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The webhook URL is a secret (a Slack incoming webhook's path is its credential).
    pub webhook_url_file: Option<String>,
    pub webhook_url_env: Option<String>,
    #[serde(default)]
    pub format: NotifyFormat,
    #[serde(default = "default_notify_on")]
    pub on: Vec<NotifyOn>,
}

/// The message body: Slack's `{"text": …}` (also what Mattermost, Rocket.Chat and Teams
/// workflows accept), or idsync's own JSON object for a ticket system or a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyFormat {
    #[default]
    Slack,
    Json,
}

/// What is worth a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyOn {
    /// The set of held actions changed since the last message.
    Held,
    /// The run failed, and the one before it did not.
    Failed,
    /// Something was applied.
    Applied,
}

impl NotifyOn {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Held => "held",
            NotifyOn::Failed => "failed",
            NotifyOn::Applied => "applied",
        }
    }
}

fn default_notify_on() -> Vec<NotifyOn> {
    vec![NotifyOn::Held, NotifyOn::Failed, NotifyOn::Applied]
}

fn default_inactive_days() -> u32 {
    crate::report::seats::DEFAULT_INACTIVE_DAYS
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn zero() -> HumanDuration {
    HumanDuration::from_secs(0)
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_page_size() -> u32 {
    500
}
fn default_users_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_groups_filter() -> String {
    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))".into()
}
fn default_email_attr() -> String {
    "mail".into()
}
fn default_username_attr() -> String {
    "uid".into()
}
fn default_name_attr() -> String {
    "cn".into()
}
fn default_anchor_attr() -> String {
    "entryUUID".into()
}
fn default_member_attr() -> String {
    "member".into()
}
fn default_target_kind() -> TargetKind {
    TargetKind::Wandb
}
fn default_wandb_url() -> String {
    "https://api.wandb.ai".into()
}
fn default_scim_path() -> String {
    "/scim".into()
}
fn default_deployment() -> Deployment {
    Deployment::Saas
}
fn default_max_concurrency() -> usize {
    4
}
fn default_max_retries() -> u32 {
    6
}
fn default_org_role() -> String {
    "member".into()
}
fn default_deprovision() -> DeprovisionMode {
    DeprovisionMode::Deactivate
}
fn default_restore_window() -> HumanDuration {
    HumanDuration::from_secs(90 * 86_400)
}
fn default_grace() -> HumanDuration {
    HumanDuration::from_secs(72 * 3600)
}
fn default_team_membership() -> TeamMembershipMode {
    TeamMembershipMode::Authoritative
}
fn default_team_role() -> String {
    "member".into()
}
fn default_max_deprovisions() -> usize {
    10
}
fn default_max_deprovision_percent() -> u32 {
    5
}
fn default_max_team_removals() -> usize {
    50
}
fn default_max_source_shrink_percent() -> u32 {
    10
}
fn default_source_health_window() -> HumanDuration {
    HumanDuration::from_secs(7 * 86_400)
}
fn default_approval_ttl() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}
fn default_schedule() -> String {
    "0 */15 * * * *".into()
}
fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_state_dir() -> String {
    "/var/lib/idsync".into()
}
fn default_log_level() -> String {
    "info".into()
}
