#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Markdown comparison of benchmark rounds written by tools/bench-compare.sh.

Usage: bench-compare.py [--threshold F] [--command CMD] RESULTS_DIR

RESULTS_DIR holds one directory per revision (named by its hash, with files
`name` and `order`) of JSON lines files <program>.<round>.jsonl, as the
bench programs write them with --format json. A case is one row of a
program: (program, group, op, impl); its value in a round is that run's
median. Units that are times (ns/op, ns/page, us/GiB, us...) are lower-better,
so a ratio new/old above 1 means slower; rows in other units (a share in
ppm) get a ratio but no verdict, and rounds where either side printed 0
are left out of a case's ratios.

For each pair of revisions (every revision against the first, and against
the one before it), and each case that both have, the report gives each
revision's median over the rounds of its round medians, the median of the
per-round ratios new/old with their min..max, and a verdict:
  regression  every round's ratio is above F (default 1.05)
  faster      every round's ratio is below 1/F
  slower?     the median ratio is above F but some round is not
  faster?     the median ratio is below 1/F but some round is not
  noise       otherwise
Ratios are taken round by round (each round runs the revisions one after
the other), so a load change that lasts a round moves both sides.
"""
import argparse
import json
import os
import statistics
import sys


def load(results):
    """{hash: (order, name, {case: {round: median}}, unit map, cpu)}."""
    revs = {}
    for h in os.listdir(results):
        d = os.path.join(results, h)
        if not os.path.isdir(d):
            continue
        with open(os.path.join(d, "name")) as f:
            name = f.read().strip()
        with open(os.path.join(d, "order")) as f:
            order = int(f.read())
        cases, units, machine = {}, {}, None
        for fn in sorted(os.listdir(d)):
            if not fn.endswith(".jsonl"):
                continue
            prog, rnd = fn[:-len(".jsonl")].rsplit(".", 1)
            with open(os.path.join(d, fn)) as f:
                for line in f:
                    line = line.strip()
                    if not line.startswith("{"):
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue
                    if "machine" in row:
                        machine = row["machine"]
                        continue
                    if "median" not in row or "group" not in row:
                        continue
                    key = (prog, row["group"], row["op"], row["impl"])
                    cases.setdefault(key, {})[int(rnd)] = row["median"]
                    units[key] = row["unit"]
        revs[h] = (order, name, cases, units, machine)
    return revs


def is_time(unit):
    """ns/op, ns/page, us/GiB, us...: lower is better."""
    return unit.split("/")[0] in ("ns", "us", "ms", "s")


def verdict(ratios, thr):
    med = statistics.median(ratios)
    if min(ratios) > thr:
        return "**regression**"
    if max(ratios) < 1 / thr:
        return "faster"
    if med > thr:
        return "slower?"
    if med < 1 / thr:
        return "faster?"
    return "noise"


def fmt(x):
    return "%.1f" % x if x >= 10 else "%.2f" % x


def compare(old, new, thr):
    """Rows (case, unit, old median, new median, ratios, verdict)."""
    _, _, ocases, units, _ = old
    _, _, ncases, _, _ = new
    rows = []
    for key in sorted(set(ocases) & set(ncases)):
        o, n = ocases[key], ncases[key]
        rounds = sorted(set(o) & set(n))
        ratios = [n[r] / o[r] for r in rounds if o[r] > 0 and n[r] > 0]
        if not ratios:
            continue
        v = verdict(ratios, thr) if is_time(units[key]) else "(not a time)"
        rows.append((key, units[key], statistics.median(o.values()),
                     statistics.median(n.values()), ratios, v))
    only_old = sorted(set(ocases) - set(ncases))
    only_new = sorted(set(ncases) - set(ocases))
    return rows, only_old, only_new


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", type=float, default=1.05)
    ap.add_argument("--command", default="")
    ap.add_argument("results")
    a = ap.parse_args()
    revs = sorted(load(a.results).items(), key=lambda kv: kv[1][0])
    if len(revs) < 2:
        sys.exit("bench-compare.py: fewer than two revisions in "
                 + a.results)
    machine = next((r[1][4] for r in revs if r[1][4]), None) or {}
    nrounds = max(len(c) for r in revs for c in r[1][2].values())
    print("# Benchmark comparison\n")
    if machine:
        print("- Date: %s; machine: %s, %s CPUs, Linux %s; %s; %s build"
              % (machine.get("date"), machine.get("cpu"),
                 machine.get("cpus"), machine.get("kernel"),
                 machine.get("compiler"), machine.get("build")))
    if a.command:
        print("- Command: `%s`" % a.command)
    print("- Revisions: " + ", ".join("%s = `%s`" % (r[1][1], r[0][:12])
                                      for r in revs))
    print("- %d rounds; per case and round the value is that run's median; "
          "ratio = new/old, median [min..max] over the rounds; `> F` counts "
          "the rounds whose ratio is above the threshold; verdict "
          "regression when min > %.2f, faster when max < %.2f, "
          "slower?/faster? when only the median passes, noise otherwise."
          % (nrounds, a.threshold, 1 / a.threshold))
    pairs = []
    for i in range(1, len(revs)):
        for j in (0, i - 1):
            if (j, i) not in pairs:
                pairs.append((j, i))
    for j, i in pairs:
        old, new = revs[j][1], revs[i][1]
        rows, only_old, only_new = compare(old, new, a.threshold)
        counts = {}
        for r in rows:
            counts[r[5]] = counts.get(r[5], 0) + 1
        print("\n## %s vs %s\n" % (new[1], old[1]))
        print("%d cases in both: %s; %d only in %s, %d only in %s.\n"
              % (len(rows), ", ".join("%d %s" % (v, k.strip("*"))
                                       for k, v in sorted(counts.items())),
                 len(only_old), old[1], len(only_new), new[1]))
        print("| program | group | op | impl | unit | %s | %s | "
              "ratio [min..max] | > %.2f | verdict |"
              % (old[1], new[1], a.threshold))
        print("|---|---|---|---|---|---:|---:|---|---:|---|")
        for key, unit, om, nm, ratios, v in rows:
            above = sum(1 for r in ratios if r > a.threshold)
            print("| %s | %s | %s | %s | %s | %s | %s | %.3f [%.3f..%.3f] "
                  "| %d/%d | %s |"
                  % (key + (unit, fmt(om), fmt(nm), statistics.median(ratios),
                            min(ratios), max(ratios), above, len(ratios), v)))


if __name__ == "__main__":
    main()
