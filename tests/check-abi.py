#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The shared library's ABI is exactly what the public headers declare.

Usage: check-abi.py --include DIR [--include DIR...] --map lib/libpagestate.map
                    --lib libpagestate.so --soversion 0.N --uffd yes|no
                    --cc "CC"

Checks, each failing with the names involved:
  1. the version script's node is LIBPAGESTATE_<soversion>, it ends with
     "local: *;", and its global list is exactly the functions the public
     headers declare (extern, not static inline; the ps_*_slow paths
     included); no public header declares an extern ps__ function;
  2. the SONAME is libpagestate.so.<soversion>;
  3. the library exports exactly those functions (those of pagestate/uffd.h
     only when the bridge is built), each under the version node, and
     nothing else but the node itself;
  4. every ps_ function the headers' inline functions call is exported: a
     file including every header is compiled with -fkeep-inline-functions
     and its undefined ps_ symbols must all be exported.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

FUNC_RE = re.compile(
    r'^(?P<ret>[A-Za-z_][^;{}()#=/]*?[\s\*])(?P<name>ps_\w+)\s*\(', re.M)


def declared(incdirs):
    """{name: header} of the extern functions the public headers declare."""
    out = {}
    for d in incdirs:
        for path in sorted(glob.glob(os.path.join(d, 'pagestate', '*.h'))):
            src = open(path, encoding='utf-8').read()
            for m in FUNC_RE.finditer(src):
                line_start = src.rfind('\n', 0, m.start()) + 1
                if src[line_start:m.start()].lstrip().startswith(
                        ('#', '*', '/')):
                    continue
                ret = m.group('ret')
                if 'typedef' in ret or re.search(r'\bstatic\b', ret):
                    continue
                out[m.group('name')] = os.path.basename(path)
    return out


def parse_map(path):
    text = open(path, encoding='utf-8').read()
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    m = re.match(r'\s*([A-Za-z_][\w.]*)\s*\{\s*global:(.*?)local:\s*\*\s*;'
                 r'\s*\}\s*;\s*$', text, re.S)
    if not m:
        return None, None
    names = [n.strip() for n in m.group(2).split(';') if n.strip()]
    return m.group(1), names


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True,
                          text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--include', action='append', required=True)
    ap.add_argument('--map', required=True)
    ap.add_argument('--lib', required=True)
    ap.add_argument('--soversion', required=True)
    ap.add_argument('--uffd', choices=['yes', 'no'], required=True)
    ap.add_argument('--cc', required=True)
    a = ap.parse_args()
    problems = []

    decl = declared(a.include)
    internal = sorted(n for n in decl if n.startswith('ps__'))
    if internal:
        problems.append('public headers declare internal extern functions '
                        '(an inline function calling one cannot link '
                        'against the shared library): %s' %
                        ', '.join(internal))
    api = {n: h for n, h in decl.items() if not n.startswith('ps__')}

    # 1. The version script.
    node, listed = parse_map(a.map)
    want_node = 'LIBPAGESTATE_' + a.soversion
    if node is None:
        problems.append('%s: not "NODE { global: ...; local: *; };"' % a.map)
        listed = []
    elif node != want_node:
        problems.append('version node %s, expected %s' % (node, want_node))
    dup = sorted({n for n in listed if listed.count(n) > 1})
    if dup:
        problems.append('listed twice in the map: %s' % ', '.join(dup))
    for n in sorted(set(api) - set(listed)):
        problems.append('declared in pagestate/%s but not in the map: %s' %
                        (api[n], n))
    for n in sorted(set(listed) - set(api)):
        problems.append('in the map but declared by no public header: %s' % n)

    # 2. The SONAME.
    dyn = run(['readelf', '-d', '-W', a.lib])
    m = re.search(r'\(SONAME\).*\[(.*)\]', dyn)
    soname = m.group(1) if m else None
    if soname != 'libpagestate.so.' + a.soversion:
        problems.append('SONAME %s, expected libpagestate.so.%s' %
                        (soname, a.soversion))

    # 3. The exports.
    exported, versions = set(), {}
    for line in run(['nm', '-D', '--defined-only', '--with-symbol-versions',
                     a.lib]).splitlines():
        f = line.split()
        if len(f) != 3:
            continue
        name, _, ver = f[2].partition('@')
        ver = ver.lstrip('@')
        if f[1] == 'A':
            if name != want_node:
                problems.append('unexpected absolute symbol %s' % f[2])
            continue
        exported.add(name)
        versions[name] = ver
    want = {n for n, h in api.items() if a.uffd == 'yes' or h != 'uffd.h'}
    for n in sorted(want - exported):
        problems.append('declared in pagestate/%s but not exported: %s' %
                        (api[n], n))
    for n in sorted(exported - want):
        problems.append('exported but not a public function: %s' % n)
    for n in sorted(exported & want):
        if versions[n] != want_node:
            problems.append('%s exported with version "%s", expected %s' %
                            (n, versions[n], want_node))

    # 4. What the inline functions call.
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'all.c')
        obj = os.path.join(tmp, 'all.o')
        with open(src, 'w') as f:
            f.write('#include <pagestate/pagestate.h>\n'
                    'int ps_abi_check_unit;\n')
        cmd = a.cc.split() + ['-std=c11', '-O0', '-fkeep-inline-functions',
                              '-c', src, '-o', obj]
        for d in a.include:
            cmd.append('-I' + d)
        subprocess.run(cmd, check=True)
        undef = {l.split()[-1] for l in run(['nm', '-u', obj]).splitlines()
                 if l.split() and l.split()[-1].startswith('ps_')}
    if not undef:
        problems.append('no inline function calls the library: the '
                        '-fkeep-inline-functions check saw nothing')
    for n in sorted(undef - exported):
        problems.append('an inline function calls %s, which is not exported'
                        % n)

    for p in problems:
        print(p)
    print('abi: %d functions declared, %d in the map, %d exported as %s by '
          '%s; %d called from inline functions; %d problems' %
          (len(api), len(listed), len(exported), want_node, soname,
           len(undef), len(problems)))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
