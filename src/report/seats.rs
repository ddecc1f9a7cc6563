//! The seat and inactivity report (`idsync report seats`): who holds a W&B seat, who has
//! not used it, who is in W&B but not in the directory, and what it costs.
//!
//! Pure, like the rest of `report`: the directory and org snapshots, the policy, the
//! tombstones and `now` are inputs; nothing here reads a clock, a file or the network.
//! Scope comes from the plan core ([`crate::plan::in_domain_scope`],
//! [`crate::plan::self_emails`]) so that the report and the plan never disagree on who
//! idsync manages.
//!
//! Decisions (also in the README):
//! - A *seat* is an active W&B user (service accounts are not users and use no seat, even
//!   when `/Users` lists them: they are counted apart and listed nowhere else; deactivated
//!   users hold none).
//! - *Inactive* means an active user whose `lastActiveAt` is **more than** N days (N × 24 h)
//!   before `now` (exactly N days is still active), or is `null`, which W&B documents as
//!   *never active* (an invited user who never came is exactly the seat to reclaim). Only a
//!   missing `lastActiveAt` is *unknown*, never guessed (not from `daysActive`, whose
//!   meaning W&B does not document). A deactivated user holds no seat and is never inactive.
//! - An *orphan* is an active W&B user in scope (managed domain, not ignored, not idsync
//!   itself) with no directory entry for its email, enabled or disabled.
//! - *External* users are those whose email domain is not managed, grouped by domain.
//! - Cost: active users only, by org role; admins, viewers and other roles are priced as
//!   members unless their own price is set (an upper bound rather than a guess low).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;

use crate::model::{DirectorySnapshot, Email, LastActive, OrgRole, OrgSnapshot, OrgUser};
use crate::plan::{in_domain_scope, self_emails, Policy, Tombstone, TombstoneCause};

/// The inactivity threshold when neither `[report] inactive_days` nor `--inactive-days`
/// says otherwise.
pub const DEFAULT_INACTIVE_DAYS: u32 = 90;

/// What a report cell says when the server does not provide a value.
pub const UNKNOWN: &str = "unknown";

/// What the last-activity cell says for `lastActiveAt: null`.
pub const NEVER: &str = "never";

/// The width the text report fits in by default (`--wide` lifts it).
pub const TEXT_WIDTH: usize = 100;

/// How the text report lays out its tables. Markdown, JSON and CSV ignore it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// Fit [`TEXT_WIDTH`] columns: long keys wrap onto a line of their own, free text wraps
    /// under its column, other cells are cut with an ellipsis; the users table shows teams,
    /// pipeline keys and tombstones on detail lines under each user.
    #[default]
    Fit,
    /// One line per row, every cell whole, every column (`--wide`).
    Wide,
}

/// Output format of `idsync report seats --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SeatFormat {
    Text,
    Markdown,
    Json,
    Csv,
}

/// Monthly price of one seat per org role (`[report] seat_price`). `member` is the base:
/// a role without its own price is priced as a member.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeatPrices {
    pub member: f64,
    pub admin: Option<f64>,
    pub viewer: Option<f64>,
}

impl SeatPrices {
    /// The price of one seat of `role`, and whether it is that role's own price (false:
    /// the member price stands in for it).
    pub fn price_of(&self, role: &OrgRole) -> (f64, bool) {
        let own = match role {
            OrgRole::Member => return (self.member, true),
            OrgRole::Admin => self.admin,
            OrgRole::Viewer => self.viewer,
            OrgRole::Other(_) => None,
        };
        match own {
            Some(p) => (p, true),
            None => (self.member, false),
        }
    }
}

/// Everything a seat report is computed from. Time is an input.
#[derive(Debug, Clone, Copy)]
pub struct SeatInput<'a> {
    pub directory: &'a DirectorySnapshot,
    pub org: &'a OrgSnapshot,
    pub policy: &'a Policy,
    /// The tombstones the plan core derives now (see `idsync plan`).
    pub tombstones: &'a [Tombstone],
    pub prices: Option<&'a SeatPrices>,
    /// Users whose last activity is more than this many days before `now` are inactive.
    pub inactive_days: u32,
    pub now: DateTime<Utc>,
}

/// Why a W&B user is or is not in idsync's scope (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Managed domain, not ignored, not idsync itself: idsync manages this user.
    Managed,
    /// Email domain not in `policy.managed_domains`: an external collaborator.
    External,
    /// In `policy.ignore_users`.
    Ignored,
    /// The identity idsync authenticates as.
    #[serde(rename = "self")]
    SelfIdentity,
    /// W&B has no usable email for this user: never in scope.
    NoEmail,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Managed => "managed",
            Scope::External => "external",
            Scope::Ignored => "ignored",
            Scope::SelfIdentity => "self",
            Scope::NoEmail => "no_email",
        }
    }
}

/// What the directory says about a W&B user's email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryState {
    Enabled,
    Disabled,
    /// No directory entry has this email.
    Missing,
    /// Several directory entries have this email (nothing drives changes for it).
    Conflict,
}

impl DirectoryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryState::Enabled => "enabled",
            DirectoryState::Disabled => "disabled",
            DirectoryState::Missing => "missing",
            DirectoryState::Conflict => "conflict",
        }
    }
    /// Whether some directory entry has this email.
    pub fn present(self) -> bool {
        self != DirectoryState::Missing
    }
}

/// A user's tombstone, as the plan sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TombstoneView {
    /// `missing` or `disabled`.
    pub cause: TombstoneCause,
    pub since: String,
    /// `None` when `policy.deprovision = "off"`.
    pub deprovision_after: Option<String>,
    /// The grace period has run out: the next run plans the deprovision.
    pub deprovision_due: bool,
}

/// One W&B user in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeatUser {
    /// Lower case when usable; W&B's raw value otherwise.
    pub email: String,
    pub username: String,
    pub org_role: String,
    pub active: bool,
    /// Team -> team role.
    pub teams: BTreeMap<String, String>,
    /// RFC 3339; `null` when never active or unknown (see `never_active`).
    pub last_active_at: Option<String>,
    /// W&B reports `lastActiveAt: null`: the user has never been active.
    pub never_active: bool,
    /// As the server reports it; `null` when it does not (unknown).
    pub days_active: Option<u64>,
    /// Whole days between `last_active_at` and the report time; `null` without a time.
    pub days_since_active: Option<i64>,
    /// The report's definition: an active user last active more than `inactive_days` ago,
    /// or never active. Always `false` for a deactivated user (no seat); `null` only for an
    /// active user whose activity the server does not report.
    pub inactive: Option<bool>,
    pub directory: DirectoryState,
    pub in_directory: bool,
    pub directory_disabled: bool,
    pub scope: Scope,
    pub in_scope: bool,
    /// Active, in scope, and no directory entry.
    pub orphan: bool,
    pub pipeline_key_owner: bool,
    /// What the user's keys run (`pipeline_key_owners`, or inventory names / teams).
    pub pipelines: Vec<String>,
    pub tombstone: Option<TombstoneView>,
    /// Monthly price of this user's seat; `null` when deactivated or no prices are set.
    pub monthly_price: Option<f64>,
}

/// Users of one org role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoleCount {
    pub active: usize,
    pub deactivated: usize,
    /// Active users inactive for more than the threshold.
    pub inactive: usize,
}

/// Users of one external domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DomainCount {
    pub users: usize,
    pub active: usize,
}

/// The cost of one org role's seats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleCost {
    pub seats: usize,
    pub price: f64,
    /// False when the member price stands in for a role without its own price.
    pub own_price: bool,
    pub monthly: f64,
}

/// Estimated monthly cost of the active seats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    pub monthly_total: f64,
    /// The part of the total spent on seats of inactive users.
    pub inactive_monthly: f64,
    pub by_role: BTreeMap<String, RoleCost>,
    /// How roles without their own price were priced.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeatSummary {
    /// Users `/Users` lists (service accounts are not users).
    pub users: usize,
    /// Service accounts `/Users` lists (some W&B servers do): no seat, not in `users`.
    pub service_accounts: usize,
    /// Active users: the seats in use.
    pub active: usize,
    pub deactivated: usize,
    /// By org role; `admin`, `member` and `viewer` are always present.
    pub by_role: BTreeMap<String, RoleCount>,
    pub in_scope: usize,
    pub inactive_days: u32,
    /// Active users whose last activity is more than `inactive_days` ago, or who were never
    /// active (`never_active` of them).
    pub inactive: usize,
    /// Active users W&B reports as never active (`lastActiveAt: null`); part of `inactive`.
    pub never_active: usize,
    /// Active users for whom the server gives no `lastActiveAt`.
    pub activity_unknown: usize,
    /// Active in-scope users with no directory entry.
    pub orphans: usize,
    /// Active W&B users whose directory entry is disabled.
    pub disabled_in_directory: usize,
    /// Users whose domain is not managed, by domain.
    pub externals: BTreeMap<String, DomainCount>,
    pub external_users: usize,
    pub ignored: usize,
    pub no_usable_email: usize,
    pub tombstones: usize,
    pub pipeline_key_owners: usize,
    /// `null` when `[report] seat_price` is not set.
    pub cost: Option<Cost>,
}

/// The whole report: what every renderer shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeatReport {
    pub version: u32,
    pub report: &'static str,
    pub generated_at: String,
    pub source: String,
    pub summary: SeatSummary,
    /// Sorted by email.
    pub users: Vec<SeatUser>,
}

/// The two numbers the daemon exports (`idsync_inactive_users`, `idsync_orphan_users`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeatMetrics {
    pub inactive_users: usize,
    pub orphan_users: usize,
}

impl SeatReport {
    pub fn metrics(&self) -> SeatMetrics {
        SeatMetrics {
            inactive_users: self.summary.inactive,
            orphan_users: self.summary.orphans,
        }
    }
}

/// The daemon's gauges from one run's snapshots: active users inactive for more than
/// `inactive_days`, and active in-scope users missing from the directory. The same
/// definitions as the report (it is the report's summary).
pub fn seat_metrics(
    directory: &DirectorySnapshot,
    org: &OrgSnapshot,
    policy: &Policy,
    inactive_days: u32,
    now: DateTime<Utc>,
) -> SeatMetrics {
    build(SeatInput {
        directory,
        org,
        policy,
        tombstones: &[],
        prices: None,
        inactive_days,
        now,
    })
    .metrics()
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Rounds money to cents for presentation; sums are done before rounding.
fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Whether a user last active at `last` counts as inactive at `now`: strictly more than
/// `days` × 24 h ago. Returns (whole days since, inactive).
pub fn inactivity(last: DateTime<Utc>, now: DateTime<Utc>, days: u32) -> (i64, bool) {
    let elapsed = now.signed_duration_since(last);
    (elapsed.num_days().max(0), elapsed > Duration::days(i64::from(days)))
}

/// Builds the report.
pub fn build(input: SeatInput<'_>) -> SeatReport {
    let SeatInput {
        directory,
        org,
        policy,
        tombstones,
        prices,
        inactive_days,
        now,
    } = input;

    // Directory entries per usable email: (entries, enabled).
    let mut dir: HashMap<Email, (usize, bool)> = HashMap::with_capacity(directory.people.len());
    for p in &directory.people {
        if let Some(e) = p.email.as_deref().and_then(Email::parse) {
            let slot = dir.entry(e).or_insert((0, false));
            slot.0 += 1;
            slot.1 = p.enabled;
        }
    }
    let me = self_emails(org, policy);
    let tomb: HashMap<&Email, &Tombstone> = tombstones.iter().map(|t| (&t.user, t)).collect();
    let mut pipelines: HashMap<&Email, Vec<String>> = HashMap::new();
    for o in &policy.guards.pipeline_owners {
        let label = match (&o.name, &o.team) {
            (Some(n), Some(t)) => format!("{n} (team {t})"),
            (Some(n), None) => n.clone(),
            (None, Some(t)) => format!("team {t}"),
            (None, None) => "guards.pipeline_key_owners".to_string(),
        };
        let v = pipelines.entry(&o.owner).or_default();
        if !v.contains(&label) {
            v.push(label);
        }
    }

    let mut by_role: BTreeMap<String, RoleCount> = ["admin", "member", "viewer"]
        .iter()
        .map(|r| (r.to_string(), RoleCount::default()))
        .collect();
    let service_accounts = org.users.iter().filter(|u| u.service_account).count();
    let mut s = SeatSummary {
        users: org.users.len() - service_accounts,
        service_accounts,
        active: 0,
        deactivated: 0,
        by_role: BTreeMap::new(),
        in_scope: 0,
        inactive_days,
        inactive: 0,
        never_active: 0,
        activity_unknown: 0,
        orphans: 0,
        disabled_in_directory: 0,
        externals: BTreeMap::new(),
        external_users: 0,
        ignored: 0,
        no_usable_email: 0,
        tombstones: 0,
        pipeline_key_owners: 0,
        cost: None,
    };
    let mut cost_by_role: BTreeMap<String, RoleCost> = BTreeMap::new();
    let mut inactive_monthly = 0.0;

    let mut users: Vec<SeatUser> = Vec::with_capacity(org.users.len());
    for u in org.users.iter().filter(|u| !u.service_account) {
        let email = Email::parse(&u.email);
        let scope = scope_of(email.as_ref(), policy, &me);
        let directory = match email.as_ref().and_then(|e| dir.get(e)) {
            None => DirectoryState::Missing,
            Some((n, _)) if *n > 1 => DirectoryState::Conflict,
            Some((_, true)) => DirectoryState::Enabled,
            Some((_, false)) => DirectoryState::Disabled,
        };
        let (days_since_active, inactive) = match (u.active, u.last_active) {
            (active, LastActive::At(t)) => {
                let (d, i) = inactivity(t, now, inactive_days);
                (Some(d), Some(i && active))
            }
            // No seat, so not an inactive seat, whatever the activity.
            (false, _) => (None, Some(false)),
            (true, LastActive::Never) => (None, Some(true)),
            (true, LastActive::Unknown) => (None, None),
        };
        let orphan = u.active && scope == Scope::Managed && directory == DirectoryState::Missing;
        let pipes = email.as_ref().and_then(|e| pipelines.get(e)).cloned().unwrap_or_default();
        let tombstone = email.as_ref().and_then(|e| tomb.get(e)).map(|t| TombstoneView {
            cause: t.cause,
            since: rfc3339(&t.since),
            deprovision_after: t.deprovision_after.as_ref().map(rfc3339),
            deprovision_due: t.deprovision_after.is_some_and(|a| now >= a),
        });
        let price = match prices {
            Some(p) if u.active => Some(p.price_of(&u.org_role)),
            _ => None,
        };

        // Summary counts.
        let role = by_role.entry(u.org_role.as_str().to_string()).or_default();
        if u.active {
            s.active += 1;
            role.active += 1;
            match inactive {
                Some(true) => {
                    s.inactive += 1;
                    role.inactive += 1;
                    s.never_active += usize::from(u.last_active == LastActive::Never);
                }
                Some(false) => {}
                None => s.activity_unknown += 1,
            }
            if directory == DirectoryState::Disabled {
                s.disabled_in_directory += 1;
            }
        } else {
            s.deactivated += 1;
            role.deactivated += 1;
        }
        match scope {
            Scope::Managed => s.in_scope += 1,
            Scope::External => {
                s.external_users += 1;
                let d = s
                    .externals
                    .entry(email.as_ref().map(|e| e.domain().to_string()).unwrap_or_default())
                    .or_default();
                d.users += 1;
                d.active += usize::from(u.active);
            }
            Scope::Ignored => s.ignored += 1,
            Scope::SelfIdentity => {}
            Scope::NoEmail => s.no_usable_email += 1,
        }
        s.orphans += usize::from(orphan);
        s.tombstones += usize::from(tombstone.is_some());
        s.pipeline_key_owners += usize::from(!pipes.is_empty());
        if let Some((p, own)) = price {
            let c = cost_by_role.entry(u.org_role.as_str().to_string()).or_insert(RoleCost {
                seats: 0,
                price: p,
                own_price: own,
                monthly: 0.0,
            });
            c.seats += 1;
            c.monthly += p;
            if inactive == Some(true) {
                inactive_monthly += p;
            }
        }

        users.push(user_row(
            u,
            email,
            scope,
            directory,
            days_since_active,
            inactive,
            orphan,
            pipes,
            tombstone,
            price,
        ));
    }
    users.sort_by(|a, b| a.email.cmp(&b.email).then_with(|| a.username.cmp(&b.username)));
    s.by_role = by_role;

    if prices.is_some() {
        let mut notes = Vec::new();
        let mut total = 0.0;
        for (role, c) in cost_by_role.iter_mut() {
            total += c.monthly;
            c.monthly = cents(c.monthly);
            if !c.own_price {
                notes.push(format!(
                    "{role} seats are priced as member seats: set [report] seat_price.{role} if they cost otherwise"
                ));
            }
        }
        s.cost = Some(Cost {
            monthly_total: cents(total),
            inactive_monthly: cents(inactive_monthly),
            by_role: cost_by_role,
            notes,
        });
    }

    SeatReport {
        version: 1,
        report: "seats",
        generated_at: rfc3339(&now),
        source: directory.kind.clone(),
        summary: s,
        users,
    }
}

#[allow(clippy::too_many_arguments)]
fn user_row(
    u: &OrgUser,
    email: Option<Email>,
    scope: Scope,
    directory: DirectoryState,
    days_since_active: Option<i64>,
    inactive: Option<bool>,
    orphan: bool,
    pipelines: Vec<String>,
    tombstone: Option<TombstoneView>,
    price: Option<(f64, bool)>,
) -> SeatUser {
    SeatUser {
        email: email.map(|e| e.as_str().to_string()).unwrap_or_else(|| u.email.trim().to_string()),
        username: u.username.clone(),
        org_role: u.org_role.as_str().to_string(),
        active: u.active,
        teams: u.teams.iter().map(|(t, r)| (t.clone(), r.as_str().to_string())).collect(),
        last_active_at: u.last_active.at().as_ref().map(rfc3339),
        never_active: u.last_active == LastActive::Never,
        days_active: u.days_active,
        days_since_active,
        inactive,
        directory,
        in_directory: directory.present(),
        directory_disabled: directory == DirectoryState::Disabled,
        scope,
        in_scope: scope == Scope::Managed,
        orphan,
        pipeline_key_owner: !pipelines.is_empty(),
        pipelines,
        tombstone,
        monthly_price: price.map(|(p, _)| p),
    }
}

fn scope_of(email: Option<&Email>, policy: &Policy, me: &std::collections::BTreeSet<Email>) -> Scope {
    let Some(e) = email else { return Scope::NoEmail };
    if me.contains(e) {
        Scope::SelfIdentity
    } else if in_domain_scope(e, policy) {
        Scope::Managed
    } else if policy.managed_domains.iter().any(|d| d == e.domain()) {
        Scope::Ignored
    } else {
        Scope::External
    }
}

// ---------------------------------------------------------------------------------------
// Renderers.

/// Renders `report` in `format`, text fitting [`TEXT_WIDTH`] columns.
pub fn render(report: &SeatReport, format: SeatFormat) -> String {
    render_with(report, format, Layout::Fit)
}

/// Renders `report` in `format`; `layout` applies to text only.
pub fn render_with(report: &SeatReport, format: SeatFormat, layout: Layout) -> String {
    use super::escape::{neutralised, Keep};
    // JSON keeps exact values (its writer escapes them); everything else is for reading.
    match format {
        SeatFormat::Text => neutralised(render_text_with(report, layout), Keep::Layout),
        SeatFormat::Markdown => neutralised(render_markdown(report), Keep::Layout),
        SeatFormat::Json => render_json(report),
        SeatFormat::Csv => neutralised(render_csv(report), Keep::Layout),
    }
}

pub fn render_json(report: &SeatReport) -> String {
    match super::escape::json_string(report) {
        Ok(s) => s,
        // Unreachable for this data (finite numbers, string keys); a report must not panic.
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 20] = [
    "email",
    "username",
    "org_role",
    "active",
    "teams",
    "last_active_at",
    "days_active",
    "days_since_active",
    "inactive",
    "directory",
    "in_directory",
    "in_scope",
    "scope",
    "orphan",
    "pipeline_key_owner",
    "pipelines",
    "tombstone",
    "tombstone_since",
    "deprovision_after",
    "monthly_price",
];

/// One row per user, with a header. Unknown activity is the word `unknown`; lists are
/// `;`-separated (`team:role;team:role`). Quoting is the `csv` crate's (RFC 4180).
pub fn render_csv(report: &SeatReport) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::with_capacity(report.users.len() * 160));
    // Writing to a Vec cannot fail for I/O reasons; a failure would be a bug, so it ends
    // the output early rather than panicking.
    let mut ok = w.write_record(CSV_HEADER).is_ok();
    for u in &report.users {
        if !ok {
            break;
        }
        let t = u.tombstone.as_ref();
        let row: [String; 20] = [
            u.email.clone(),
            u.username.clone(),
            u.org_role.clone(),
            u.active.to_string(),
            teams_cell(u, ";"),
            last_active_csv(u),
            opt(u.days_active),
            opt(u.days_since_active),
            opt(u.inactive),
            u.directory.as_str().into(),
            u.in_directory.to_string(),
            u.in_scope.to_string(),
            u.scope.as_str().into(),
            u.orphan.to_string(),
            u.pipeline_key_owner.to_string(),
            u.pipelines.join(";"),
            t.map(|t| cause(t.cause).to_string()).unwrap_or_default(),
            t.map(|t| t.since.clone()).unwrap_or_default(),
            t.and_then(|t| t.deprovision_after.clone()).unwrap_or_default(),
            u.monthly_price.map(money).unwrap_or_default(),
        ];
        ok = w.write_record(&row).is_ok();
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// RFC 3339, `never` or `unknown`.
fn last_active_csv(u: &SeatUser) -> String {
    match &u.last_active_at {
        Some(t) => t.clone(),
        None if u.never_active => NEVER.into(),
        None => UNKNOWN.into(),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| UNKNOWN.into())
}

fn cause(c: TombstoneCause) -> &'static str {
    match c {
        TombstoneCause::Missing => "missing",
        TombstoneCause::Disabled => "disabled",
    }
}

fn money(x: f64) -> String {
    format!("{x:.2}")
}

fn teams_cell(u: &SeatUser, sep: &str) -> String {
    let mut out = String::new();
    for (t, r) in &u.teams {
        if !out.is_empty() {
            out.push_str(sep);
        }
        out.push_str(t);
        out.push(':');
        out.push_str(r);
    }
    out
}

fn last_active_cell(u: &SeatUser) -> String {
    match (&u.last_active_at, u.days_since_active) {
        (Some(t), Some(d)) => format!("{} ({d} d ago)", &t[..t.len().min(10)]),
        (Some(t), None) => t.clone(),
        (None, _) if u.never_active => NEVER.into(),
        (None, _) => UNKNOWN.into(),
    }
}

fn directory_cell(u: &SeatUser) -> &'static str {
    match u.directory {
        DirectoryState::Enabled => "yes",
        DirectoryState::Disabled => "disabled",
        DirectoryState::Missing => "no",
        DirectoryState::Conflict => "conflict",
    }
}

fn scope_cell(u: &SeatUser) -> String {
    match u.scope {
        Scope::Managed => "yes".into(),
        other => format!("no ({})", other.as_str().replace('_', " ")),
    }
}

fn tombstone_cell(u: &SeatUser) -> String {
    match &u.tombstone {
        None => "-".into(),
        Some(t) => {
            let after = match (&t.deprovision_after, t.deprovision_due) {
                (_, true) => "deprovision due".to_string(),
                (Some(a), false) => format!("deprovision after {}", &a[..a.len().min(10)]),
                (None, false) => "never deprovisioned".to_string(),
            };
            format!("{} since {}, {after}", cause(t.cause), &t.since[..t.since.len().min(10)])
        }
    }
}

fn active_cell(u: &SeatUser) -> &'static str {
    if u.active {
        "yes"
    } else {
        "no"
    }
}

/// The per-user table's columns, shared by text and markdown.
const USER_COLUMNS: [&str; 10] = [
    "email",
    "role",
    "active",
    "last active",
    "days active",
    "directory",
    "in scope",
    "pipeline key",
    "tombstone",
    "teams",
];

/// The users table of the text report that fits [`TEXT_WIDTH`]: the rest of
/// [`USER_COLUMNS`] is on detail lines under each user ([`user_details`]), `days active`
/// only in `--wide`, JSON and CSV.
const USER_COLUMNS_FIT: [&str; 6] = ["email", "role", "active", "last active", "directory", "in scope"];

fn user_cells_fit(u: &SeatUser) -> Vec<String> {
    let [email, role, active, last, _days, directory, scope, ..] = user_cells(u);
    vec![email, role, active, last, directory, scope]
}

/// Teams, pipeline keys and the tombstone, each a line when there is something to say.
fn user_details(u: &SeatUser) -> Vec<String> {
    let mut out = Vec::new();
    if !u.teams.is_empty() {
        out.push(format!("teams: {}", teams_cell(u, ", ")));
    }
    if u.pipeline_key_owner {
        out.push(format!("pipeline key: {}", u.pipelines.join("; ")));
    }
    if u.tombstone.is_some() {
        out.push(format!("tombstone: {}", tombstone_cell(u)));
    }
    out
}

fn user_cells(u: &SeatUser) -> [String; 10] {
    [
        if u.email.is_empty() { "(no email)".into() } else { u.email.clone() },
        u.org_role.clone(),
        active_cell(u).into(),
        last_active_cell(u),
        opt(u.days_active),
        directory_cell(u).into(),
        scope_cell(u),
        if u.pipeline_key_owner { u.pipelines.join("; ") } else { "-".into() },
        tombstone_cell(u),
        if u.teams.is_empty() { "-".into() } else { teams_cell(u, ", ") },
    ]
}

/// `1 orphan`, `2 orphans`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn days_phrase(n: u32) -> String {
    count(n as usize, "day", "days")
}

/// Summary lines shared by text and markdown (markdown adds list markers).
fn summary_lines(r: &SeatReport) -> Vec<String> {
    let s = &r.summary;
    let active_users = |n: usize| count(n, "active user", "active users");
    let mut out = vec![
        format!(
            "{}: {} active (seats in use), {} deactivated",
            count(s.users, "W&B user", "W&B users"),
            s.active,
            s.deactivated
        ),
        format!(
            "{} inactive for more than {} (never-active users included)",
            active_users(s.inactive),
            days_phrase(s.inactive_days)
        ),
        format!("{} never active (W&B reports lastActiveAt: null)", active_users(s.never_active)),
        format!(
            "activity unknown for {} (the server does not report lastActiveAt)",
            active_users(s.activity_unknown)
        ),
        format!(
            "{} in scope; {} (active, in a managed domain, not in the directory)",
            s.in_scope,
            count(s.orphans, "orphan", "orphans"),
        ),
        format!("{} active in W&B but disabled in the directory", s.disabled_in_directory),
        format!(
            "{} in {}; {} ignored; {} without a usable email",
            count(s.external_users, "external collaborator", "external collaborators"),
            count(s.externals.len(), "domain", "domains"),
            s.ignored,
            s.no_usable_email
        ),
        format!(
            "{} tombstoned; {}",
            s.tombstones,
            count(s.pipeline_key_owners, "pipeline-key owner", "pipeline-key owners")
        ),
    ];
    if s.service_accounts > 0 {
        out.push(format!(
            "{} listed by W&B: no seats, not counted above",
            count(s.service_accounts, "service account", "service accounts")
        ));
    }
    match &s.cost {
        Some(c) => out.push(format!(
            "estimated monthly cost {} (of which {} for inactive users' seats)",
            money(c.monthly_total),
            money(c.inactive_monthly)
        )),
        None => out.push("estimated monthly cost: not configured (set [report] seat_price)".into()),
    }
    out
}

fn inactive_users(r: &SeatReport) -> Vec<&SeatUser> {
    let mut v: Vec<&SeatUser> = r.users.iter().filter(|u| u.active && u.inactive == Some(true)).collect();
    // Never active first, then the longest inactive.
    v.sort_by(|a, b| {
        (b.never_active, b.days_since_active)
            .cmp(&(a.never_active, a.days_since_active))
            .then_with(|| a.email.cmp(&b.email))
    });
    v
}

fn orphans(r: &SeatReport) -> Vec<&SeatUser> {
    r.users.iter().filter(|u| u.orphan).collect()
}

/// A text table: columns padded to their widest cell (counted in characters), one line
/// per row, every cell whole.
fn text_table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let upper: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    text_row(out, &widths, upper.iter().map(String::as_str));
    for r in rows {
        text_row(out, &widths, r.iter().map(String::as_str));
    }
}

/// Middle cells longer than this are cut with an ellipsis in [`Layout::Fit`].
const CELL_CAP: usize = 24;
/// The narrowest the first column gets before long keys wrap onto a line of their own.
const MIN_FIRST: usize = 16;
/// The narrowest the last column (free text, wrapped) gets to leave the first one whole.
const MIN_LAST: usize = 24;
/// Detail lines under a row: their indent, and that of their continuation lines.
const DETAIL_INDENT: usize = 6;

/// `s` cut to `width` characters, the last one an ellipsis when anything was cut.
fn ellipsize(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Greedy word wrap at `width` characters; a word longer than a line is cut with an
/// ellipsis. Always at least one line.
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = vec![String::new()];
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let word = ellipsize(word, width);
        let n = word.chars().count();
        let cur = lines.last_mut().map(|l| l.chars().count()).unwrap_or(0);
        if cur > 0 && cur + 1 + n > width {
            lines.push(word);
        } else if let Some(l) = lines.last_mut() {
            if !l.is_empty() {
                l.push(' ');
            }
            l.push_str(&word);
        }
    }
    lines
}

/// A text table that fits [`TEXT_WIDTH`] columns: middle cells are cut with an ellipsis
/// at [`CELL_CAP`], a first cell (the key: an email, a role) too long for its column is
/// written whole on a line of its own, the last column wraps under itself, and each row's
/// `details` follow it, indented and wrapped.
fn text_table_fit(out: &mut String, header: &[&str], rows: &[Vec<String>], details: &[Vec<String>]) {
    let n = header.len();
    let capped: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, c)| if i > 0 && i + 1 < n { ellipsize(c, CELL_CAP) } else { c.clone() })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &capped {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    if n > 1 {
        let middle: usize = widths[1..n - 1].iter().sum();
        let avail = TEXT_WIDTH.saturating_sub(2 + middle + 2 * (n - 1));
        let (first, last) = (widths[0], widths[n - 1]);
        if first + last > avail {
            // The last column (free text) wraps, so it gives way first, down to MIN_LAST.
            let reserve = last.min(MIN_LAST).max(header[n - 1].chars().count());
            widths[0] = first.min(MIN_FIRST.max(avail.saturating_sub(reserve)));
            widths[n - 1] = avail.saturating_sub(widths[0]).max(header[n - 1].chars().count());
        }
    }
    let last_start = 2 + widths.iter().take(n.saturating_sub(1)).map(|w| w + 2).sum::<usize>();
    let upper: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    text_row(out, &widths, upper.iter().map(String::as_str));
    let no_details = Vec::new();
    for (i, r) in capped.iter().enumerate() {
        let mut cells: Vec<String> = r.clone();
        if let Some(first) = cells.first_mut() {
            if first.chars().count() > widths[0] {
                let _ = writeln!(out, "  {}", ellipsize(first, TEXT_WIDTH - 2));
                first.clear();
            }
        }
        let mut more = Vec::new();
        if n > 1 {
            if let Some(last) = cells.last_mut() {
                let mut lines = wrap_words(last, widths[n - 1]).into_iter();
                *last = lines.next().unwrap_or_default();
                more = lines.collect();
            }
        }
        text_row(out, &widths, cells.iter().map(String::as_str));
        for l in more {
            let _ = writeln!(out, "{}{l}", " ".repeat(last_start));
        }
        for d in details.get(i).unwrap_or(&no_details) {
            let mut lines = wrap_words(d, TEXT_WIDTH - DETAIL_INDENT).into_iter();
            if let Some(l) = lines.next() {
                let _ = writeln!(out, "{}{l}", " ".repeat(DETAIL_INDENT));
            }
            for l in lines {
                let _ = writeln!(out, "{}{l}", " ".repeat(DETAIL_INDENT + 2));
            }
        }
    }
}

fn text_row<'c>(out: &mut String, widths: &[usize], cells: impl Iterator<Item = &'c str>) {
    let start = out.len();
    out.push_str("  ");
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        out.push_str(c);
        if i + 1 < widths.len() {
            let pad = widths[i].saturating_sub(c.chars().count());
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    // No trailing blanks when the last cells are short.
    let trimmed = out[start..].trim_end().len();
    out.truncate(start + trimmed);
    out.push('\n');
}

fn role_rows(r: &SeatReport) -> Vec<Vec<String>> {
    let s = &r.summary;
    let mut rows: Vec<Vec<String>> = s
        .by_role
        .iter()
        .map(|(role, c)| {
            vec![
                role.clone(),
                c.active.to_string(),
                c.deactivated.to_string(),
                c.inactive.to_string(),
            ]
        })
        .collect();
    rows.push(vec![
        "total".into(),
        s.active.to_string(),
        s.deactivated.to_string(),
        s.inactive.to_string(),
    ]);
    rows
}

fn cost_rows(c: &Cost) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = c
        .by_role
        .iter()
        .map(|(role, rc)| vec![role.clone(), rc.seats.to_string(), money(rc.price), money(rc.monthly)])
        .collect();
    rows.push(vec![
        "total".into(),
        c.by_role.values().map(|rc| rc.seats).sum::<usize>().to_string(),
        String::new(),
        money(c.monthly_total),
    ]);
    rows
}

/// One titled table of the text and markdown reports: both show the same sections, in
/// the same order, and differ only in how a table is drawn.
struct Section {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Lines after the table (the cost section's notes).
    notes: Vec<String>,
    /// Per row, lines under it in the text report that fits (the users table's details).
    details: Vec<Vec<String>>,
}

impl Section {
    fn new(title: String, header: &[&str], rows: Vec<Vec<String>>) -> Section {
        Section {
            title,
            header: header.iter().map(|h| h.to_string()).collect(),
            rows,
            notes: Vec::new(),
            details: Vec::new(),
        }
    }
}

/// The report's sections. `Layout::Fit` draws the users table in fewer columns, with
/// detail lines; markdown uses `Layout::Wide`.
fn sections(r: &SeatReport, layout: Layout) -> Vec<Section> {
    let s = &r.summary;
    let inactive_col = format!("inactive >{}d", s.inactive_days);
    let mut out = vec![Section::new(
        "Seats by org role".into(),
        &["role", "active", "deactivated", &inactive_col],
        role_rows(r),
    )];
    if let Some(c) = &s.cost {
        let mut cost = Section::new(
            "Estimated monthly cost (active seats)".into(),
            &["role", "seats", "price", "monthly"],
            cost_rows(c),
        );
        cost.notes = c.notes.clone();
        out.push(cost);
    }
    let inactive = inactive_users(r);
    out.push(Section::new(
        format!("Inactive for more than {} ({})", days_phrase(s.inactive_days), inactive.len()),
        &["email", "role", "last active", "directory", "in scope"],
        inactive
            .iter()
            .map(|u| {
                vec![
                    u.email.clone(),
                    u.org_role.clone(),
                    last_active_cell(u),
                    directory_cell(u).into(),
                    scope_cell(u),
                ]
            })
            .collect(),
    ));
    let orph = orphans(r);
    out.push(Section::new(
        format!("Orphans: in a managed domain, not in the directory ({})", orph.len()),
        &["email", "role", "last active", "tombstone"],
        orph.iter()
            .map(|u| vec![u.email.clone(), u.org_role.clone(), last_active_cell(u), tombstone_cell(u)])
            .collect(),
    ));
    out.push(Section::new(
        format!("External collaborators by domain ({})", s.external_users),
        &["domain", "users", "active"],
        s.externals
            .iter()
            .map(|(d, c)| vec![d.clone(), c.users.to_string(), c.active.to_string()])
            .collect(),
    ));
    let title = format!("Users ({})", r.users.len());
    out.push(match layout {
        Layout::Wide => Section::new(title, &USER_COLUMNS, r.users.iter().map(|u| Vec::from(user_cells(u))).collect()),
        Layout::Fit => {
            let mut sec = Section::new(title, &USER_COLUMNS_FIT, r.users.iter().map(user_cells_fit).collect());
            sec.details = r.users.iter().map(user_details).collect();
            sec
        }
    });
    // Every cell one value on one line, neutralised before widths are measured, so a
    // hostile name neither acts on the terminal nor breaks the table.
    let one = |s: &mut String| *s = super::escape::neutralised(std::mem::take(s), super::escape::Keep::Nothing);
    for sec in &mut out {
        sec.rows.iter_mut().chain(sec.details.iter_mut()).flatten().for_each(one);
        sec.notes.iter_mut().for_each(one);
    }
    out
}

fn header_refs(sec: &Section) -> Vec<&str> {
    sec.header.iter().map(String::as_str).collect()
}

/// The text report that fits [`TEXT_WIDTH`] columns.
pub fn render_text(r: &SeatReport) -> String {
    render_text_with(r, Layout::Fit)
}

pub fn render_text_with(r: &SeatReport, layout: Layout) -> String {
    let mut out = String::with_capacity(256 + r.users.len() * 160);
    let _ = writeln!(out, "Seat report at {} (directory: {})", r.generated_at, r.source);
    for l in summary_lines(r) {
        match layout {
            Layout::Wide => {
                let _ = writeln!(out, "  {l}");
            }
            Layout::Fit => {
                let mut lines = wrap_words(&l, TEXT_WIDTH - 4).into_iter();
                if let Some(first) = lines.next() {
                    let _ = writeln!(out, "  {first}");
                }
                for more in lines {
                    let _ = writeln!(out, "    {more}");
                }
            }
        }
    }
    for sec in sections(r, layout) {
        let _ = writeln!(out, "\n{}:", sec.title);
        if sec.rows.is_empty() {
            let _ = writeln!(out, "  none");
        } else if layout == Layout::Wide {
            text_table(&mut out, &header_refs(&sec), &sec.rows);
        } else {
            text_table_fit(&mut out, &header_refs(&sec), &sec.rows, &sec.details);
        }
        for n in &sec.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    out
}

/// A markdown cell: pipes escaped, no line breaks.
fn md(s: &str) -> String {
    if !s.contains(['|', '\n', '\r']) {
        return s.to_string();
    }
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn md_table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    md_row(out, header.iter().copied());
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for r in rows {
        md_row(out, r.iter().map(String::as_str));
    }
}

/// `| a | b |`, escaping as [`md`] does, written in place (reports have 50,000 rows).
fn md_row<'c>(out: &mut String, cells: impl Iterator<Item = &'c str>) {
    out.push('|');
    for c in cells {
        out.push(' ');
        for ch in c.chars() {
            match ch {
                '|' => out.push_str("\\|"),
                '\n' | '\r' => out.push(' '),
                other => out.push(other),
            }
        }
        out.push_str(" |");
    }
    out.push('\n');
}

pub fn render_markdown(r: &SeatReport) -> String {
    let mut out = String::with_capacity(256 + r.users.len() * 160);
    let _ = writeln!(out, "## Seat report\n\nAt {} (directory: {}).\n", r.generated_at, md(&r.source));
    for l in summary_lines(r) {
        let _ = writeln!(out, "- {}", md(&l));
    }
    for sec in sections(r, Layout::Wide) {
        let _ = writeln!(out, "\n### {}\n", md(&sec.title));
        if sec.rows.is_empty() {
            let _ = writeln!(out, "None.");
        } else {
            md_table(&mut out, &header_refs(&sec), &sec.rows);
        }
        for n in &sec.notes {
            let _ = writeln!(out, "\n_Note: {}_", md(n));
        }
    }
    out
}

#[cfg(test)]
#[path = "seats_tests.rs"]
mod tests;
