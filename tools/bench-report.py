#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn the benchmark programs' JSON lines into bench/report.md and plots.

Usage: bench-report.py RESULTS_DIR OUT_DIR [SHARED_RESULTS_DIR]

RESULTS_DIR holds one <bench>.jsonl per program (written by
tools/run-benchmarks.sh with --format json). OUT_DIR receives report.md and
plots/*.png (gnuplot, pngcairo). The report is also printed to stdout.
SHARED_RESULTS_DIR, if given, holds the same programs' results linked with
the shared library: the report then has a second targets table, beside the
first's values, and says where the two differ and why.

Every number in the report is a median of repeated runs, shown with its
min..max and its ratios to the floor and to the peer the program named, as
the programs printed them: a lone absolute time says little on a noisy
machine, a ratio measured in the same run says more.
"""
import json
import os
import shutil
import subprocess
import sys


def load(results_dir):
    benches = {}
    for name in sorted(os.listdir(results_dir)):
        if not name.endswith(".jsonl"):
            continue
        bench = name[:-6]
        rows, targets, machine, notes = [], [], None, []
        with open(os.path.join(results_dir, name)) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if "machine" in d:
                    machine = d["machine"]
                elif "target" in d:
                    targets.append(d)
                elif "skip" in d:
                    notes.append(d["skip"])
                elif "group" in d:
                    rows.append(d)
        benches[bench] = {"rows": rows, "targets": targets,
                          "machine": machine, "notes": notes}
    return benches


def fmt(x):
    if x is None:
        return ""
    ax = abs(x)
    if ax >= 100:
        return "%.0f" % x
    if ax >= 10:
        return "%.1f" % x
    return "%.2f" % x


def ratio_range(d, key):
    """ " [min..max]" of a ratio measured interleaved, else "". """
    if key + "_min" not in d:
        return ""
    return " [%.2f..%.2f]" % (d[key + "_min"], d[key + "_max"])


def table(rows):
    out = ["| group | case | impl | median | min..max | unit | vs floor |"
           " vs peer |", "|---|---|---|---:|---|---|---:|---|"]
    for r in rows:
        vf = (("%.2fx" % r["vs_floor"]) + ratio_range(r, "ratio")
              if "vs_floor" in r else "")
        vp = ("%.2fx%s %s" % (r["vs_peer"], ratio_range(r, "peer_ratio"),
                              r.get("peer", ""))
              if "vs_peer" in r else "")
        impl = r["impl"]
        if impl == "pagestate":
            impl = "**pagestate**"
        out.append("| %s | %s | %s | %s | %s..%s | %s | %s | %s |" % (
            r["group"], r["op"], impl, fmt(r["median"]), fmt(r["min"]),
            fmt(r["max"]), r["unit"], vf, vp))
    return "\n".join(out)


def find(rows, group=None, op=None, impl=None):
    return [r for r in rows
            if (group is None or r["group"] == group)
            and (op is None or r["op"] == op)
            and (impl is None or r["impl"] == impl)]


def gnuplot(script, out_png):
    if not shutil.which("gnuplot"):
        return False
    full = ('set terminal pngcairo size 900,520 font "Sans,10" noenhanced\n'
            'set output "%s"\n' % out_png) + script
    r = subprocess.run(["gnuplot"], input=full, text=True,
                       capture_output=True)
    if r.returncode:
        sys.stderr.write("gnuplot failed for %s:\n%s" % (out_png, r.stderr))
        return False
    return True


def write_dat(path, header, lines):
    with open(path, "w") as f:
        f.write("# " + header + "\n")
        for l in lines:
            f.write(l + "\n")


def plot_page(b, plots, tmp):
    """ns per operation by primitive and peer (bench-page)."""
    rows = b["rows"]
    impls = ["floor", "linux", "pagestate", "cas", "mutex"]
    made = []
    for scenario in ("uncontended", "shared"):
        ops = []
        for r in rows:
            if r["group"] == scenario and r["op"] not in ops:
                ops.append(r["op"])
        if not ops:
            continue
        lines = []
        for op in ops:
            vals = []
            for impl in impls:
                m = find(rows, scenario, op, impl)
                vals.append(str(m[0]["median"]) if m else "NaN")
            lines.append('"%s" %s' % (op, " ".join(vals)))
        dat = os.path.join(tmp, "page-%s.dat" % scenario)
        png = "page-%s.png" % scenario
        script = (
            'set title "bench-page, %s: ns per operation (log scale)"\n'
            'set style data histograms\nset style histogram clustered gap 1\n'
            'set style fill solid 0.8 border -1\nset logscale y\n'
            'set ylabel "ns per op (median)"\nset grid ytics\n'
            'set key top left\n'
            'plot for [i=2:%d] "%s" using i:xtic(1) title columnheader(i)\n'
            % (scenario, len(impls) + 1, dat))
        # columnheader(i) reads the titles from a header line without '#'.
        with open(dat, "w") as f:
            f.write("op " + " ".join(impls) + "\n")
            for l in lines:
                f.write(l + "\n")
        if gnuplot(script, os.path.join(plots, png)):
            made.append((png, "bench-page, %s: ns per operation by "
                         "primitive and peer" % scenario))
    return made


def plot_scan(b, plots, tmp):
    """Scan time against written fraction, kernel beside us (bench-pgtable)."""
    rows = b["rows"]
    fracs = [("0%", 0.1), ("1%", 1), ("100%", 100)]
    series = []
    for kind in ("report", "rearm"):
        for impl in ("floor", "pagestate", "kernel"):
            pts = []
            for label, x in fracs:
                m = find(rows, "scan", "%s-%s" % (label, kind), impl)
                if m:
                    pts.append("%s %s" % (x, m[0]["median"]))
            if pts:
                series.append(("%s, %s" % (impl, "get-and-rearm"
                                           if kind == "rearm" else "report"),
                               pts))
    if not series:
        return []
    plot_cmds = []
    for i, (title, pts) in enumerate(series):
        dat = os.path.join(tmp, "scan-%d.dat" % i)
        write_dat(dat, "written_percent us", pts)
        plot_cmds.append('"%s" using 1:2 with linespoints lw 2 title "%s"'
                         % (dat, title))
    script = ('set title "bench-pgtable: scan of 1 GiB against written '
              'fraction (log-log)"\n'
              'set logscale xy\nset xlabel "pages written (%; 0% drawn at '
              '0.1)"\nset ylabel "us per scan (median)"\nset grid\n'
              'set key top left\nplot ' + ", ".join(plot_cmds) + "\n")
    png = "scan-vs-written.png"
    if gnuplot(script, os.path.join(plots, png)):
        return [(png, "bench-pgtable: scan time against written fraction, "
                 "the kernel's PAGEMAP_SCAN beside us")]
    return []


def plot_notifier(b, plots, tmp):
    """Invalidation cost against subscription count (bench-notifier)."""
    pts = []
    for r in find(b["rows"], "invalidate"):
        # The count is in the impl (interleaved columns) or, in older
        # results, in the op.
        op = r["op"] if "n=" in r["op"] else r["impl"]
        if "n=" in op:
            n = op.split("n=")[1].split()[0].replace(",", "")
            pts.append((int(n), r["median"]))
    if not pts:
        return []
    dat = os.path.join(tmp, "invalidate.dat")
    write_dat(dat, "subscriptions ns", ["%d %s" % p for p in sorted(pts)])
    script = ('set title "bench-notifier: invalidate start+end against '
              'subscription count"\nset logscale x\nset xlabel '
              '"subscriptions (non-overlapping)"\nset ylabel "ns per '
              'invalidation (median)"\nset grid\nset yrange [0:*]\n'
              'plot "%s" using 1:2 with linespoints lw 2 title "pagestate"\n'
              % dat)
    png = "invalidate-vs-subscriptions.png"
    if gnuplot(script, os.path.join(plots, png)):
        return [(png, "bench-notifier: invalidation cost against "
                 "subscription count")]
    return []


def plot_harvest(b, plots, tmp):
    """Harvest time against space size (bench-space)."""
    pts = []
    for r in find(b["rows"], "harvest by size", impl="pagestate"):
        gib = float(r["op"].split()[0])
        pts.append((gib, r["median"]))
    if not pts:
        return []
    dat = os.path.join(tmp, "harvest.dat")
    write_dat(dat, "GiB us", ["%g %s" % p for p in sorted(pts)])
    cmds = ['"%s" using 1:2 with linespoints lw 2 title "pagestate '
            '(1,000 dirty pages)"' % dat]
    flat = find(b["rows"], "harvest", impl="flat bitmap")
    if flat:
        fdat = os.path.join(tmp, "harvest-flat.dat")
        # A flat bitmap scan grows with the space: scale the 1 TiB point.
        t = flat[0]["median"]
        write_dat(fdat, "GiB us", ["%g %g" % (g, t * g / 1024.0)
                                   for g, _ in sorted(pts)])
        cmds.append('"%s" using 1:2 with lines dt 2 lw 2 title "flat '
                    '1-bit-per-page scan (measured at 1 TiB, scaled)"' % fdat)
    script = ('set title "bench-space: dirty harvest against space size"\n'
              'set logscale xy\nset xrange [0.8:1400]\n'
              'set xlabel "space size (GiB)"\n'
              'set ylabel "us per harvest (median)"\nset grid\n'
              'set key top left\nplot ' + ", ".join(cmds) + "\n")
    png = "harvest-vs-size.png"
    if gnuplot(script, os.path.join(plots, png)):
        return [(png, "bench-space: harvest time against space size")]
    return []


# The summary: one row per primitive, ours against its floor and its peers,
# all from the same runs. (bench, group, op, our impl, label)
PRIMITIVES = [
    ("page", "uncontended", "get+put", "pagestate", "page get+put"),
    ("page", "uncontended", "pin+unpin", "pagestate", "page pin+unpin"),
    ("page", "shared", "pin+unpin", "pagestate", "page pin+unpin, shared word"),
    ("page", "shared", "try_get+put", "pagestate",
     "page try_get+put, shared word"),
    ("page", "uncontended", "is_pinned", "pagestate", "page is_pinned"),
    ("notifier", "read-pair", "begin+load+retry", "seq", "seqcount read pair"),
    ("notifier", "read-pair", "begin+load+retry", "interval",
     "interval read_begin+retry"),
    ("notifier", "read-pair", "begin+load+retry", "space",
     "whole-space read_begin+retry"),
    ("pgtable", "lookup", "random-warm", "pagestate", "pgtable lookup (warm)"),
    ("pgtable", "fault", "async-first-write", "pagestate",
     "async wp write fault"),
    ("space", "pin 1 GiB", "pin_range+unpin", "pagestate",
     "space pin_range+unpin, per page"),
    ("space", "secondary", "map_secondary", "pagestate",
     "secondary map (seed 003), per page"),
    ("prot", "kmap", "pair", "already-mapped", "kmap+kunmap"),
    ("prot", "convert", "1GiB", "convert", "conversion, per page"),
    ("uffd", "fault", "sync-round-trip", "bridge", "uffd sync fault round trip"),
]
# Peers, in column order: the floor, then the implementations we compare to.
PEERS = ["floor", "linux", "kernel", "raw", "ck", "cas", "mutex", "get+put"]


def summary_rows(benches):
    out = []
    for bench, group, op, ours, label in PRIMITIVES:
        if bench not in benches:
            continue
        rows = benches[bench]["rows"]
        m = find(rows, group, op, ours)
        if not m:
            continue
        peers = {}
        for impl in PEERS:
            if impl == ours:
                continue
            pm = find(rows, group, op, impl)
            if pm:
                peers[impl] = pm[0]["median"]
        out.append((label, m[0]["median"], m[0]["unit"], peers, m[0]))
    return out


def summary_table(rows):
    md = ["| primitive | pagestate | unit | floor | pagestate / floor | peers: median (peer / pagestate) |",
          "|---|---:|---|---:|---:|---|"]
    for label, v, unit, peers, row in rows:
        fl = peers.get("floor")
        others = ", ".join("%s %s (%.2fx)" % (k, fmt(pv), pv / v if v else 0)
                           for k, pv in peers.items() if k != "floor")
        # The program's own ratio (per-round, when interleaved) if it gave
        # one; else the ratio of the two medians.
        if "vs_floor" in row:
            vf = "%.2fx%s" % (row["vs_floor"], ratio_range(row, "ratio"))
        else:
            vf = ("%.2fx" % (v / fl)) if fl else ""
        md.append("| %s | **%s** | %s | %s | %s | %s |" % (
            label, fmt(v), unit, fmt(fl) if fl is not None else "", vf,
            others))
    return md


def plot_primitives(rows, plots, tmp):
    """ns per operation by primitive and peer, every module, log scale."""
    rows = [r for r in rows if r[2].startswith("ns/")]
    if not rows:
        return []
    cols = ["floor", "pagestate", "linux", "kernel", "raw", "ck", "cas",
            "mutex"]
    used = [c for c in cols if c == "pagestate" or
            any(c in r[3] for r in rows)]
    dat = os.path.join(tmp, "primitives.dat")
    with open(dat, "w") as f:
        f.write("primitive " + " ".join(used) + "\n")
        for label, v, unit, peers, _ in rows:
            vals = []
            for c in used:
                x = v if c == "pagestate" else peers.get(c)
                vals.append(str(x) if x is not None else "NaN")
            f.write('"%s" %s\n' % (label, " ".join(vals)))
    script = (
        'set terminal pngcairo size 1200,600 font "Sans,10" noenhanced\n'
        'set title "ns per operation by primitive and peer (median, log '
        'scale)"\n'
        'set style data histograms\nset style histogram clustered gap 1\n'
        'set style fill solid 0.8 border -1\nset logscale y\n'
        'set ylabel "ns per op"\nset grid ytics\nset key top left\n'
        'set xtics rotate by 30 right nomirror\nset bmargin 10\nset rmargin 4\n'
        'plot for [i=2:%d] "%s" using i:xtic(1) title columnheader(i)\n'
        % (len(used) + 1, dat))
    png = "primitives.png"
    if gnuplot(script, os.path.join(plots, png)):
        return [(png, "ns per operation by primitive and peer, every "
                 "module (median, log scale)")]
    return []


def target_value(t):
    rng = (" [%s..%s]" % (fmt(t["min"]), fmt(t["max"]))
           if "min" in t else "")
    return fmt(t["value"]) + rng


def differs(a, b):
    """Does the shared build's target @b differ from the archive's @a?

    Interleaved ratios carry the per-round min..max of their run: the two
    differ when either median lies outside the other's range. Other values
    (counts, bytes, single figures) differ when they are 10% apart.
    """
    if "min" in a and "min" in b:
        return not (a["min"] <= b["value"] <= a["max"] or
                    b["min"] <= a["value"] <= b["max"])
    lo, hi = sorted((abs(a["value"]), abs(b["value"])))
    return hi > 1.1 * lo if lo else hi != 0


# Why the shared library's figures can differ from the archive's: the
# mechanisms, stated once; the report lists the targets where they showed.
SHARED_WHY = (
    "The same programs and options, linked with `libpagestate.so` (built in "
    "BUILDDIR-shared with `-Ddefault_library=shared`) instead of the "
    "archive. Two things differ. Every call from a program into the "
    "library goes through the PLT, one more indirect jump a call: it "
    "shows in per-call paths (`ps_pgtable_get()`, single-page pins), not "
    "in runs, batches or the inline fast paths (`ps_pgtable_lookup()`, "
    "the page word), and the library's calls to itself are direct in both "
    "(hidden visibility, `-fno-semantic-interposition`). And the code is "
    "laid out differently, so a tight loop's branch may cross a 32-byte "
    "boundary in one build only, which slows that loop on Intel cores with "
    "the JCC erratum (the benchmark programs are padded against it, the "
    "library is not). The TLS model does not differ: with the default "
    "`rcu_tls=initial-exec` the RCU read side reaches liburcu-bp's "
    "thread-local reader record with one GOT load and one %fs-relative "
    "load in both, since the variable lives in `liburcu-bp.so` either way "
    "(`rcu_tls=descriptor` would add a two-instruction descriptor call per "
    "access in the shared library; the general-dynamic model of "
    "liburcu-bp's own wrappers, four `__tls_get_addr()` calls a section). "
    "A target differs below where either build's median lies outside the "
    "other's per-round min..max (10% for figures that are not interleaved "
    "ratios); on a noisy machine that is all the ranges can tell.")


def shared_section(benches, shared):
    md = ["## Targets, shared library", "", SHARED_WHY, "",
          "| benchmark | target | archive | shared | limit | verdict "
          "(shared) | differs |", "|---|---|---:|---:|---:|---|---|"]
    diff, flips = [], []
    for name, b in shared.items():
        base = {t["target"]: t for t in benches.get(name, {}).get(
            "targets", [])}
        for t in b["targets"]:
            a = base.get(t["target"])
            d = a is not None and differs(a, t)
            if d:
                diff.append("%s %s (%s -> %s)" % (
                    name, t["target"], fmt(a["value"]), fmt(t["value"])))
            if a is not None and a["met"] != t["met"]:
                flips.append("%s %s (%s in the archive, %s shared)" % (
                    name, t["target"], "met" if a["met"] else "missed",
                    "met" if t["met"] else "missed"))
            md.append("| %s | %s | %s | %s | %s %s | %s | %s |" % (
                name, t["target"], target_value(a) if a else "",
                target_value(t), t["op"], fmt(t["limit"]),
                "met" if t["met"] else "**missed**",
                "**yes**" if d else ""))
    md.append("")
    md.append("Differences in this run: " +
              ("; ".join(diff) if diff else "none") + ". Verdicts that "
              "differ: " + ("; ".join(flips) if flips else "none") + ".")
    md.append("")
    return md


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    results, out = sys.argv[1], sys.argv[2]
    benches = load(results)
    shared = load(sys.argv[3]) if len(sys.argv) == 4 else None
    plots = os.path.join(out, "plots")
    os.makedirs(plots, exist_ok=True)
    tmp = os.path.join(results, "plot-data")
    os.makedirs(tmp, exist_ok=True)

    machine = next((b["machine"] for b in benches.values() if b["machine"]),
                   None)
    md = ["# libpagestate benchmark report", ""]
    if machine:
        md.append("Machine: %s, %s CPUs, Linux %s, %s, %s build, %s." % (
            machine["cpu"], machine["cpus"], machine["kernel"],
            machine["compiler"], machine["build"], machine["date"]))
        md.append("")
    md += ["Generated by `make bench` (tools/run-benchmarks.sh, then "
           "tools/bench-report.py). Every value is the median of repeated "
           "runs after a warm-up, with min..max; ratios are to the floor "
           "(the bare operation) and to the peer each program names, "
           "measured in the same run; where a ratio has a [min..max] it "
           "was measured interleaved, round by round, and is the median "
           "of the per-round ratios.", ""]

    md += ["## Targets", "", "| benchmark | target | value | limit | "
           "verdict |", "|---|---|---:|---:|---|"]
    for name, b in benches.items():
        for t in b["targets"]:
            md.append("| %s | %s | %s | %s %s | %s |" % (
                name, t["target"], target_value(t), t["op"],
                fmt(t["limit"]), "met" if t["met"] else "**missed**"))
    md.append("")
    if shared:
        md += shared_section(benches, shared)

    prims = summary_rows(benches)
    if prims:
        md += ["## Summary: each primitive against its floor and peers", ""]
        md += summary_table(prims)
        md.append("")

    figures = plot_primitives(prims, plots, tmp)
    for name, fn in (("page", plot_page), ("pgtable", plot_scan),
                     ("notifier", plot_notifier), ("space", plot_harvest)):
        if name in benches:
            figures += fn(benches[name], plots, tmp)
    if figures:
        md += ["## Plots", ""]
        for png, caption in figures:
            md += ["![%s](plots/%s)" % (caption, png), "", "*%s*" % caption,
                   ""]

    for name, b in benches.items():
        md += ["## bench-%s" % name, ""]
        for note in b["notes"]:
            md += ["Skipped: %s" % note, ""]
        if b["rows"]:
            md += [table(b["rows"]), ""]
    text = "\n".join(md)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
