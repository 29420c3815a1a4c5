#!/usr/bin/env python3
"""Strict checker for Autobahn TestSuite reports.

Usage:
    python3 autobahn/check.py [--agent NAME] [--expect-cases N]
                              [--allow-unimplemented SECTIONS] TARGET...

TARGET is a role ("server" or "client", meaning
autobahn/reports/<role>/index.json below the repository root) or the path of
an index.json file. Several targets may be given; all are checked.

index.json looks like
    {agent: {case_id: {"behavior": ..., "behaviorClose": ..., ...}}}

A case passes only if both "behavior" and "behaviorClose" are OK or
INFORMATIONAL, in every section (ALLOW_UNIMPLEMENTED_SECTIONS below is empty).
--allow-unimplemented 12,13 also accepts behavior UNIMPLEMENTED in those
sections: for a testee that does not offer permessage-deflate at all (the
hyper and axum examples, run with AUTOBAHN_SERVER_EXAMPLE), never for ours.

Exit status: 0 if every target passes, 1 if any case fails, the agent is
missing, no case was found, or (with --expect-cases) the number of cases is
not the expected one; 2 for a missing or unreadable file.
"""

import argparse
import json
import os
import sys

# No exception: permessage-deflate (12.x, 13.x) is implemented, so every
# section must pass strictly. A section named here would also accept
# behavior UNIMPLEMENTED (behaviorClose must still be OK or INFORMATIONAL).
ALLOW_UNIMPLEMENTED_SECTIONS = frozenset()
# Sections given with --allow-unimplemented (set once, in main).
EXTRA_UNIMPLEMENTED = frozenset()

PASSING = ("OK", "INFORMATIONAL")
COLUMNS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
DEFAULT_AGENT = "rfc6455"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def case_key(case_id):
    """Sort key: "1.2.10" comes after "1.2.9"."""
    parts = []
    for part in case_id.split("."):
        parts.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return parts


def section_of(case_id):
    return case_id.split(".", 1)[0]


def case_passes(case_id, result):
    behavior = result.get("behavior")
    behavior_close = result.get("behaviorClose")
    allowed = PASSING
    if section_of(case_id) in ALLOW_UNIMPLEMENTED_SECTIONS | EXTRA_UNIMPLEMENTED:
        allowed = PASSING + ("UNIMPLEMENTED",)
    return behavior in allowed and behavior_close in PASSING


def resolve(target):
    if target in ("server", "client"):
        return os.path.join(REPO_ROOT, "autobahn", "reports", target, "index.json")
    return target


def check(path, agent, expect_cases):
    """Print the report summary for one index.json; return an exit status."""
    print("== %s (agent %r)" % (path, agent))
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        print("ERROR: cannot read report: %s" % e)
        return 2
    if not isinstance(report, dict) or agent not in report:
        agents = sorted(report) if isinstance(report, dict) else []
        print("FAIL: agent %r not in report (agents found: %s)"
              % (agent, ", ".join(map(repr, agents)) or "none"))
        return 1
    cases = report[agent]
    if not isinstance(cases, dict) or not cases:
        print("FAIL: no cases found for agent %r" % agent)
        return 1

    # counts[section][column or "OTHER" or "FAILING"]
    counts = {}
    failing = []
    for case_id in sorted(cases, key=case_key):
        result = cases[case_id] or {}
        row = counts.setdefault(section_of(case_id), {})
        behavior = result.get("behavior")
        column = behavior if behavior in COLUMNS else "OTHER"
        row[column] = row.get(column, 0) + 1
        if not case_passes(case_id, result):
            row["FAILING"] = row.get("FAILING", 0) + 1
            failing.append((case_id, behavior, result.get("behaviorClose")))

    headers = ("section", "cases") + COLUMNS + ("OTHER", "FAILING")
    widths = [max(7, len(h)) for h in headers]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))
    print(line(headers))
    total = {}
    for section in sorted(counts, key=case_key):
        row = counts[section]
        n = sum(row.get(c, 0) for c in COLUMNS + ("OTHER",))
        for key, value in list(row.items()) + [("cases", n)]:
            total[key] = total.get(key, 0) + value
        print(line([section, n] + [row.get(c, 0) for c in headers[2:]]))
    print(line(["total", total["cases"]] + [total.get(c, 0) for c in headers[2:]]))

    if failing:
        print("failing cases (%d):" % len(failing))
        for case_id, behavior, behavior_close in failing:
            print("  %-10s behavior=%-14s behaviorClose=%s" % (case_id, behavior, behavior_close))

    status = 0
    summary = "%d cases" % len(cases)
    if expect_cases is not None:
        summary += " (%d expected)" % expect_cases
        if len(cases) != expect_cases:
            print("FAIL: found %d cases, expected %d (the run was cut short?)"
                  % (len(cases), expect_cases))
            status = 1
    if failing:
        status = 1
    allowed = ", ".join(sorted(ALLOW_UNIMPLEMENTED_SECTIONS | EXTRA_UNIMPLEMENTED,
                               key=case_key)) or "none"
    print("%s: %s, %d failing (strict; UNIMPLEMENTED allowed in sections: %s)"
          % ("PASS" if status == 0 else "FAIL", summary, len(failing), allowed))
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", metavar="TARGET",
                        help='"server", "client" or a path to an index.json')
    parser.add_argument("--agent", default=DEFAULT_AGENT,
                        help="agent name in the report (default: %(default)s)")
    parser.add_argument("--expect-cases", type=int, default=None, metavar="N",
                        help="also fail unless exactly N cases were run (a full run has 517)")
    parser.add_argument("--allow-unimplemented", default="", metavar="SECTIONS",
                        help="comma-separated sections (e.g. 12,13) where behavior "
                             "UNIMPLEMENTED also passes; behaviorClose must still pass")
    args = parser.parse_args()
    global EXTRA_UNIMPLEMENTED
    EXTRA_UNIMPLEMENTED = frozenset(s for s in args.allow_unimplemented.split(",") if s)
    worst = 0
    for target in args.targets:
        worst = max(worst, check(resolve(target), args.agent, args.expect_cases))
    return worst


if __name__ == "__main__":
    sys.exit(main())
