#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check that every public function in include/pagestate/*.h is documented.

Usage: check-docs.py INCLUDE_DIR [--list]

A public function is any ps_* (not ps__*) function declared or defined at
file scope of a public header, except the out-of-line slow paths named
ps_<module>_<what>_slow: those are exported for the header's inline
functions only (they are ABI, not API) and are documented by the inline
function that calls them. Each public function must be preceded directly by
a kernel-doc block:

    /**
     * ps_thing_do() - one-line summary.
     * @thing: what it must be.
     * @n: ...
     *
     * Free text.
     * Context: who may call it, in what state (locks, sections, threads).
     * Ordering: what it orders against what, and what it pairs with.
     * Progress: wait-free, lock-free or blocking.
     * Return: values and negative errnos (omitted for void functions).
     */

Rules:
  - the heading names the function, followed by " - " and a summary;
  - every parameter has an "@name:" line, and no "@name:" names a
    parameter that does not exist;
  - "Context:" is present; "Return:" is present unless the function returns
    void;
  - "Ordering:" and "Progress:" are present, unless the Context line says
    the function is "pure" (a function of its arguments that touches no
    shared state: it has no ordering and is trivially wait-free).

Exit status 1 lists each function and what it lacks.
"""
import glob
import os
import re
import sys

# A declaration or definition at column 0: return type (any words, pointer
# stars, attribute macros, possibly on the previous line), then ps_name(.
FUNC_RE = re.compile(
    r'^(?P<ret>[A-Za-z_][^;{}()#=/]*?[\s\*])(?P<name>ps_[a-z0-9]\w*)\s*\(',
    re.M)


def split_params(src, open_idx):
    """Return the parameter list text between the '(' at open_idx and its match."""
    depth = 0
    for i in range(open_idx, len(src)):
        c = src[i]
        if c == '(':
            depth += 1
        elif c == ')':
            depth -= 1
            if depth == 0:
                return src[open_idx + 1:i]
    raise ValueError('unbalanced parentheses')


def param_names(text):
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S).strip()
    if text in ('', 'void'):
        return []
    parts, depth, cur = [], 0, ''
    for c in text:
        if c in '([':
            depth += 1
        elif c in ')]':
            depth -= 1
        if c == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += c
    parts.append(cur)
    names = []
    for p in parts:
        p = p.strip()
        if p == '...':
            names.append('...')
            continue
        m = re.search(r'\(\s*\*\s*(\w+)\s*\)', p)  # function pointer
        if m:
            names.append(m.group(1))
            continue
        p = re.sub(r'\[[^\]]*\]', '', p)  # arrays
        m = re.search(r'(\w+)\s*$', p)
        if m:
            names.append(m.group(1))
    return names


def functions(src):
    """Yield (name, ret, params, start, end) for each public function of src.

    start and end delimit the declaration or definition head, from its return
    type to the closing parenthesis of its parameter list.
    """
    for m in FUNC_RE.finditer(src):
        name = m.group('name')
        ret = m.group('ret')
        # Skip matches inside comments or preprocessor lines.
        line_start = src.rfind('\n', 0, m.start()) + 1
        if src[line_start:m.start()].lstrip().startswith(('#', '*', '/')):
            continue
        if 'typedef' in ret or name.endswith('_slow'):
            continue
        paren = src.index('(', m.end() - 1)
        text = split_params(src, paren)
        yield name, ret, param_names(text), m.start(), paren + len(text) + 2


def doc_block(src, start):
    """The lines of the kernel-doc block directly above start, or None."""
    before = src[:start]
    begin, end = before.rfind('/**'), before.rfind('*/')
    if begin < 0 or end < begin or before[end + 2:].strip():
        return None
    doc = before[begin + 3:end]
    return [re.sub(r'^\s*\*\s?', '', l) for l in doc.split('\n')]


def check_header(path):
    src = open(path, encoding='utf-8').read()
    problems = []
    count = 0
    for name, ret, params, start, _ in functions(src):
        count += 1
        where = '%s: %s()' % (os.path.basename(path), name)
        lines = doc_block(src, start)
        if lines is None:
            problems.append('%s: no kernel-doc block directly above' % where)
            continue
        body = '\n'.join(lines)
        head = next((l for l in lines if l.strip()), '')
        lacks = []
        if not re.match(r'^%s\(\)\s+-\s+\S' % re.escape(name), head.strip()):
            lacks.append('heading "%s() - summary"' % name)
        documented = re.findall(r'^@(\w+|\.\.\.):', body, re.M)
        for p in params:
            if p not in documented:
                lacks.append('@%s' % p)
        for d in documented:
            if d not in params:
                lacks.append('stale @%s (no such parameter)' % d)
        ctx = re.search(r'^Context:(.*)$', body, re.M)
        if not ctx:
            lacks.append('Context:')
        is_void = re.search(r'\bvoid\s*$', ret.strip()) is not None and \
            '*' not in ret
        if not is_void and not re.search(r'^Return:', body, re.M):
            lacks.append('Return:')
        pure = bool(ctx) and re.search(r'\bpure\b', ctx.group(1))
        if not pure:
            for key in ('Ordering:', 'Progress:'):
                if not re.search(r'(^|\s)%s' % key, body, re.M):
                    lacks.append(key)
        if lacks:
            problems.append('%s lacks %s' % (where, ', '.join(lacks)))
    return count, problems


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    headers = sorted(glob.glob(os.path.join(sys.argv[1], 'pagestate', '*.h')) +
                     glob.glob(os.path.join(sys.argv[1], '*.h')))
    total, problems = 0, []
    for h in headers:
        n, p = check_header(h)
        total += n
        problems += p
    for p in problems:
        print(p)
    print('docs: %d public functions in %d headers, %d incomplete' %
          (total, len(headers), len(problems)))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
