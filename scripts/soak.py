#!/usr/bin/env python3
"""Soak test: `idsync run` against the W&B sandbox with faults on, for a while.

Called by scripts/soak.sh (which builds the binary). The daemon runs on a short cron
schedule against a sandbox that adds latency, 429s, 500s and lost responses (500 after the
change landed), reading an LDIF directory that this script changes after every run
(people join, leave, change groups; bounded size). Midway the sandbox fails every request
for a while: /readyz must turn non-200 and recover once the faults return to normal.

Checks (each failure is a violation; any violation exits 1):
- no panic in the daemon's or the sandbox's log, and both stay up;
- /readyz agrees with SPEC §8 at every sample: 200 iff the last run did not fail and
  finished no more than 3 schedule intervals ago (computed from /status);
- /readyz turns non-200 while W&B fails hard, and 200 again after;
- every run the daemon reported (/status, /metrics) is in the state store;
- resident memory is flat: the end is within 25% + 8 MiB of the sample after warm-up;
- SIGTERM ends the daemon with exit 0.
Every wait is bounded in time.
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

KEY = "soak-key"
POOL = 80  # directory size bound: at most POOL people exist at once
TEAMS = ["ml", "research"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=5):
    """(status, text); status 0 when the request itself failed."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as e:
        return 0, str(e)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Directory:
    """The people and groups the LDIF holds; changed a little after every run."""

    def __init__(self, path, rng):
        self.path = path
        self.rng = rng
        # u000 is the org admin and never leaves (the last-admin guard would hold it).
        self.present = {0} | set(rng.sample(range(1, POOL), 45))
        self.groups = {t: {p for p in self.present if rng.random() < 0.5} for t in TEAMS}
        self.changes = 0
        self.write()

    def change(self):
        rng = self.rng
        absent = [p for p in range(1, POOL) if p not in self.present]
        leavers = rng.sample(sorted(self.present - {0}), min(2, len(self.present) - 1))
        joiners = rng.sample(absent, min(2, len(absent)))
        for p in leavers[: rng.randint(0, 2)]:
            self.present.discard(p)
            for g in self.groups.values():
                g.discard(p)
        for p in joiners[: rng.randint(0, 2)]:
            self.present.add(p)
        for _ in range(rng.randint(0, 3)):
            p = rng.choice(sorted(self.present))
            g = self.groups[rng.choice(TEAMS)]
            g.symmetric_difference_update({p})
        self.changes += 1
        self.write()

    def write(self):
        out = ["version: 1", ""]
        for p in sorted(self.present):
            uid = f"u{p:03d}"
            out += [
                f"dn: uid={uid},ou=people,dc=example,dc=com",
                "objectClass: inetOrgPerson",
                f"uid: {uid}",
                f"cn: User {p}",
                f"sn: {p}",
                f"mail: {uid}@example.com",
                f"entryUUID: anchor-{uid}",
                "",
            ]
        groups = dict(self.groups)
        groups["wandb-admins"] = {0}
        for name, members in sorted(groups.items()):
            out += [f"dn: cn={name},ou=groups,dc=example,dc=com", "objectClass: groupOfNames", f"cn: {name}"]
            out += [f"member: uid=u{m:03d},ou=people,dc=example,dc=com" for m in sorted(members)]
            out.append("")
        # Renamed into place so a run never reads half a file.
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(out))
        os.replace(tmp, self.path)


def parse_time(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("minutes", nargs="?", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, help="a short run instead (the test command's mode)")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()

    total = a.seconds if a.seconds is not None else a.minutes * 60
    short = total < 120
    # A short run needs many runs in little time; a long one runs at a daemon-like pace.
    every = 2 if short else 5
    hard_fail_bound = 12 if short else 90
    rng = random.Random(a.seed)

    work = tempfile.mkdtemp(prefix="idsync-soak-")
    sb_port, d_port = free_port(), free_port()
    sb_url, d_url = f"http://127.0.0.1:{sb_port}", f"http://127.0.0.1:{d_port}"
    seed_org = {
        "users": [{"email": "u000@example.com", "username": "u000", "org_role": "admin", "teams": {}}],
        "teams": [{"name": t} for t in TEAMS],
    }
    with open(f"{work}/org.json", "w") as f:
        json.dump(seed_org, f)
    with open(f"{work}/key", "w") as f:
        f.write(KEY + "\n")
    os.chmod(f"{work}/key", 0o600)
    directory = Directory(f"{work}/directory.ldif", rng)
    teams = "".join(
        f'\n[[policy.teams]]\nteam = "{t}"\ngroup = "cn={t},ou=groups,dc=example,dc=com"\nrole = "member"\n'
        for t in TEAMS
    )
    with open(f"{work}/idsync.toml", "w") as f:
        f.write(
            f"""[source]
kind = "ldif"
path = "{work}/directory.ldif"
[source.users]
base = "ou=people,dc=example,dc=com"
[source.groups]
base = "ou=groups,dc=example,dc=com"

[target]
url = "{sb_url}"
api_key_file = "{work}/key"
timeout = "5s"
max_retries = 4

[policy]
managed_domains = ["example.com"]
grace_period = "0s"
disabled_grace_period = "1h"

[guards]
max_deprovision_percent = 100
# The directory's groups drift by random walk; a wider margin keeps most runs unheld.
max_source_shrink_percent = 50

[daemon]
schedule = "*/{every} * * * * *"
run_on_start = true
listen = "127.0.0.1:{d_port}"
state_dir = "{work}/state"

[[policy.org_roles]]
group = "cn=wandb-admins,ou=groups,dc=example,dc=com"
role = "admin"
{teams}"""
        )

    violations = []
    procs = []

    def violate(msg):
        print(f"VIOLATION: {msg}", file=sys.stderr, flush=True)
        violations.append(msg)

    def stop_all():
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    sb_log = open(f"{work}/sandbox.log", "w")
    d_log = open(f"{work}/daemon.log", "w")
    try:
        sb = subprocess.Popen(
            [a.bin, "sandbox", "--listen", f"127.0.0.1:{sb_port}", "--org", f"{work}/org.json", "--api-key", KEY,
             "--latency", "20ms", "--throttle-rate", "0.2", "--fail-rate", "0.05", "--seed", str(a.seed)],
            stdout=sb_log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
        procs.append(sb)
        normal = {"fail_rate": 0.05, "throttle_rate": 0.2, "lost_response_rate": 0.05, "latency_ms": 20}
        deadline = time.monotonic() + 15
        while http("POST", f"{sb_url}/_sandbox/faults", normal)[0] != 200:
            if time.monotonic() > deadline or sb.poll() is not None:
                raise SystemExit(f"the sandbox did not start; see {work}/sandbox.log")
            time.sleep(0.1)

        start_utc = datetime.now(timezone.utc)
        daemon = subprocess.Popen([a.bin, "run", "-c", f"{work}/idsync.toml"], stdout=d_log, stderr=subprocess.STDOUT)
        procs.append(daemon)
        deadline = time.monotonic() + 30
        while http("GET", f"{d_url}/healthz")[0] != 200:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit(f"the daemon did not start; see {work}/daemon.log")
            time.sleep(0.1)
        started = time.monotonic()
        end_at = started + total

        rss = {"first": None, "warm": None, "end": None, "max": 0}
        seen_runs = {}  # run_id -> result, as /status reported them
        samples = checked = 0
        phase = "normal"  # normal -> failing -> recovering -> after
        phase_since = None
        saw_not_ready = saw_recovered = False
        fail_at = started + total * 0.4
        last_run_id = None

        while time.monotonic() < end_at or phase in ("failing", "recovering"):
            now = time.monotonic()
            if daemon.poll() is not None:
                violate(f"the daemon exited with {daemon.returncode} during the soak")
                break
            if sb.poll() is not None:
                violate(f"the sandbox exited with {sb.returncode} during the soak")
                break
            kib = rss_kib(daemon.pid)
            if kib:
                rss["max"] = max(rss["max"], kib)
                rss["end"] = kib
                if rss["warm"] is None and last_run_id and now - started >= total * 0.1:
                    rss["warm"] = kib

            s1, body1 = http("GET", f"{d_url}/status")
            r_code, r_text = http("GET", f"{d_url}/readyz")
            s2, body2 = http("GET", f"{d_url}/status")
            samples += 1
            if s1 == 200 and s2 == 200:
                st1, st2 = json.loads(body1), json.loads(body2)
                l1, l2 = st1.get("last_run"), st2.get("last_run")
                if l2:
                    seen_runs[l2["run_id"]] = l2["result"]
                    if l2["run_id"] != last_run_id:
                        last_run_id = l2["run_id"]
                        if rss["first"] is None:
                            rss["first"] = kib
                        directory.change()
                # Compare only when no run ended between the two reads of /status, and not
                # within a second of the staleness limit (the clocks are read apart).
                if (l1 or {}).get("run_id") == (l2 or {}).get("run_id"):
                    ready = l2 is not None and l2["result"] != "failure"
                    interval = st2.get("interval_seconds")
                    borderline = False
                    if ready and interval:
                        age = (datetime.now(timezone.utc) - parse_time(l2["finished_at"])).total_seconds()
                        ready = age <= 3 * interval
                        borderline = abs(age - 3 * interval) < 1.5
                    if not borderline:
                        checked += 1
                        if ready != (r_code == 200):
                            violate(f"/readyz answered {r_code} ({r_text.strip()}) but the last run is {l2}")
            elif r_code == 0:
                violate(f"the daemon's HTTP endpoints do not answer: {r_text}")

            if phase == "normal" and now >= fail_at:
                http("POST", f"{sb_url}/_sandbox/faults", {"fail_rate": 1.0})
                phase, phase_since = "failing", now
            elif phase == "failing":
                if r_code not in (200, 0):
                    saw_not_ready = True
                if saw_not_ready or now - phase_since > hard_fail_bound:
                    if not saw_not_ready:
                        violate(f"/readyz stayed 200 for {hard_fail_bound}s while W&B failed every request")
                    http("POST", f"{sb_url}/_sandbox/faults", normal)
                    phase, phase_since = "recovering", now
            elif phase == "recovering":
                if r_code == 200:
                    saw_recovered = True
                if saw_recovered or now - phase_since > hard_fail_bound:
                    if not saw_recovered:
                        violate(f"/readyz did not return to 200 within {hard_fail_bound}s of W&B recovering")
                    phase = "after"
            time.sleep(0.5 if short else 2)

        _, metrics = http("GET", f"{d_url}/metrics")
        m = dict(re.findall(r'^idsync_runs_total\{result="(\w+)"\} (\d+)', metrics, re.M))
        metric_runs = {k: int(v) for k, v in m.items()}

        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(20)
            if code != 0:
                violate(f"SIGTERM ended the daemon with {code}, not 0")
        except subprocess.TimeoutExpired:
            violate("the daemon did not exit within 20s of SIGTERM")
            daemon.kill()
            daemon.wait()
        stop_all()
        d_log.flush()
        sb_log.flush()

        db = sqlite3.connect(f"file:{work}/state/idsync.db?mode=ro", uri=True)
        stored = {}
        for run_id, result, started_at in db.execute("SELECT run_id, result, started_at FROM runs WHERE command = 'run'"):
            if parse_time(started_at) >= start_utc.replace(microsecond=0):
                stored[run_id] = result
        db.close()
        for run_id, result in seen_runs.items():
            if stored.get(run_id) != result:
                violate(f"run {run_id} ({result} in /status) is {stored.get(run_id, 'missing')} in the state store")
        metric_total = sum(metric_runs.values())
        # The final scrape may miss a run that ended between it and SIGTERM.
        if not metric_total <= len(stored) <= metric_total + 1:
            violate(f"/metrics counted {metric_total} runs, the state store has {len(stored)}")

        for name in ("daemon.log", "sandbox.log"):
            with open(f"{work}/{name}", errors="replace") as f:
                panics = [line.strip() for line in f if "panicked" in line or "RUST_BACKTRACE" in line]
            if panics:
                violate(f"{len(panics)} panic line(s) in {name}: {panics[0]}")

        if not seen_runs:
            violate("no run finished")
        if rss["warm"] is None:
            rss["warm"] = rss["first"]
        if rss["warm"] and rss["end"] and rss["end"] > rss["warm"] * 1.25 + 8 * 1024:
            violate(f"resident memory grew from {rss['warm']} KiB to {rss['end']} KiB")
        if samples and not checked:
            violate("/readyz was never compared with /status")

        results = {}
        for r in stored.values():
            results[r] = results.get(r, 0) + 1
        mib = lambda k: f"{k / 1024:.1f} MiB" if k else "-"
        rows = [
            ("duration", f"{time.monotonic() - started:.0f} s (schedule every {every} s, seed {a.seed})"),
            ("faults", "20 ms latency, 20% 429, 5% 500, 5% lost (500 after the write); then 100% 500"),
            ("runs recorded", f"{len(stored)} in the store {results}; /metrics {metric_runs}"),
            ("directory changes", str(directory.changes)),
            ("RSS first run / warm / end / max", f"{mib(rss['first'])} / {mib(rss['warm'])} / {mib(rss['end'])} / {mib(rss['max'])}"),
            ("/readyz samples checked", f"{checked} of {samples}; non-200 under hard failure: {saw_not_ready}; recovered: {saw_recovered}"),
            ("violations", str(len(violations))),
        ]
        width = max(len(k) for k, _ in rows)
        print("idsync soak")
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
    finally:
        stop_all()
        sb_log.close()
        d_log.close()
        if a.keep or violations:
            print(f"  logs and state kept in {work}")
        else:
            subprocess.run(["rm", "-rf", work], check=False)
    sys.exit(1 if violations else 0)


if __name__ == "__main__":
    main()
