#!/usr/bin/env python3
"""Checks that idsync's modules depend on each other only downwards (ARCHITECTURE.md).

Reads every `crate::<module>` path in src/ (use lines and inline paths alike, comments
skipped) and fails, naming file and line, when a module reaches one it must not know.
Run by scripts/test.sh so the layering cannot rot.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "src"

SHELL = {"source", "wandb", "http", "sandbox", "state", "apply", "sync", "notify", "daemon", "cli", "config", "fuzz"}

# module -> (kind, set): "only" lists everything it may use, "not" what it must not.
RULES = {
    "model": ("only", {"model"}),
    "duration": ("only", {"duration"}),
    "scim": ("only", {"scim"}),
    "plan": ("only", {"plan", "model", "duration"}),
    "report": ("not", SHELL),
    "http": ("not", {"source", "wandb", "sandbox", "state", "apply", "sync", "notify", "daemon", "cli", "plan", "report"}),
    "source": ("not", {"wandb", "sandbox", "state", "apply", "sync", "notify", "daemon", "cli"}),
    "wandb": ("not", {"source", "plan", "sandbox", "state", "apply", "sync", "notify", "daemon", "cli"}),
    "sandbox": ("only", {"sandbox", "model", "duration"}),
    "state": ("not", {"source", "wandb", "sandbox", "apply", "sync", "notify", "daemon", "cli"}),
    "apply": ("not", {"sync", "notify", "daemon", "cli", "source", "sandbox"}),
    "sync": ("not", {"daemon", "cli", "sandbox", "notify"}),
    # Above sync (it reports a finished run), below the daemon and the CLI that call it.
    "notify": ("not", {"source", "wandb", "sandbox", "apply", "daemon", "cli"}),
    "daemon": ("not", {"cli"}),
    "config": ("not", {"source", "wandb", "sandbox", "state", "apply", "sync", "notify", "daemon", "cli"}),
}
# Only the CLI may reach the daemon or the CLI.
FACES = {"daemon", "cli"}

PATH = re.compile(r"\bcrate::(\w+)")


def module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".rs")


def code_lines(text: str):
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        yield n, line.split("//", 1)[0] if "://" not in line else line


def main() -> int:
    problems = []
    for path in sorted(ROOT.rglob("*.rs")):
        me = module_of(path)
        if me in ("lib", "main"):
            continue
        kind, names = RULES.get(me, ("not", set()))
        for n, line in code_lines(path.read_text()):
            for used in PATH.findall(line):
                if used == me:
                    continue
                bad = (kind == "only" and used not in names) or (kind == "not" and used in names)
                bad = bad or (used in FACES and me != "cli" and not (me == "daemon" and used == "daemon"))
                if bad:
                    problems.append(f"{path.relative_to(ROOT.parent)}:{n}: {me} must not use crate::{used}")
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} layering violation(s): see ARCHITECTURE.md for who may use whom", file=sys.stderr)
        return 1
    print("layering OK: every crate:: path points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
