//! `idsync report seats`: the seat and inactivity report. Read-only: it reads the
//! directory and the org like `plan`, and the state store without writing to it.

use std::path::Path;

use chrono::Utc;

use super::commands::load_env;
use super::exit;
use crate::error::Error;
use crate::report::seats::{self, Layout, SeatFormat, SeatInput};
use crate::sync;

pub async fn seats(path: &Path, format: SeatFormat, inactive_days: Option<u32>, wide: bool) -> Result<u8, Error> {
    let env = load_env(path)?;
    let client = env.client()?;
    // No store yet means no tombstone clocks yet; a read-only open never creates one.
    let state = sync::load_state_read_only(&env)?;
    let (dir, org, _) = sync::read_both(&env, &client).await?;
    let now = Utc::now();
    // Tombstones as the next plan sees them (stored clocks, plus any that start now); the
    // plan is computed in memory only: nothing is persisted and nothing is applied.
    let plan = sync::plan_now(&env, &dir, &org, &state, now);
    let prices = env.config.report.seat_prices();
    let report = seats::build(SeatInput {
        directory: &dir,
        org: &org,
        policy: &env.policy,
        tombstones: &plan.tombstones,
        prices: prices.as_ref(),
        inactive_days: inactive_days.unwrap_or(env.config.report.inactive_days),
        now,
    });
    let layout = if wide { Layout::Wide } else { Layout::Fit };
    super::write_rendered(&seats::render_with(&report, format, layout));
    Ok(exit::IN_SYNC)
}
