//! Progress on a terminal: a spinner while both sides are read, a bar while applying.
//! Drawn on stderr only when stderr is a terminal, so logs, pipes and files (`2> f`,
//! `systemd-run --pipe`, the journal) never carry it; cleared when done, so the report
//! and the final counts are what stays on screen.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::{ActionResult, Progress};
use crate::plan::Action;

fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A spinner with `message` until dropped; nothing off a terminal.
pub(crate) struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub(crate) fn start(message: &str) -> Spinner {
        if !on_terminal() {
            return Spinner(None);
        }
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap_or_else(|_| ProgressStyle::default_spinner()));
        pb.set_message(message.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Spinner(Some(pb))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

/// A bar over the actions being applied, naming the last one done; nothing off a
/// terminal.
pub(crate) struct ApplyBar(Option<ProgressBar>);

impl ApplyBar {
    pub(crate) fn new(actions: usize) -> ApplyBar {
        if !on_terminal() || actions == 0 {
            return ApplyBar(None);
        }
        let pb = ProgressBar::with_draw_target(Some(actions as u64), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("applying {pos}/{len} [{bar:30}] {per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        ApplyBar(Some(pb))
    }
}

impl Progress for ApplyBar {
    fn action_done(&self, a: &Action, r: &ActionResult) {
        if let Some(pb) = &self.0 {
            let who = a.user.as_ref().map(|u| u.as_str()).or(a.team.as_deref()).unwrap_or("");
            let how = if r.ok() { "" } else { " (not ok)" };
            let who = crate::report::escape::neutralise(who, crate::report::escape::Keep::Nothing);
            pb.set_message(format!("{} {who}{how}", a.kind));
            pb.inc(1);
        }
    }
}

impl Drop for ApplyBar {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}
