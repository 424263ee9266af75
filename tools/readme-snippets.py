#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn the ```c blocks of README.md into one C program, so they stay true.

Usage: readme-snippets.py README.md OUTPUT.c

Each ```c block becomes the body of `static int snippet_N(void)`, which
falls through to `return 0`. An HTML comment directly above the fence
(blank lines allowed) says more; it is invisible on the rendered page:

    <!-- snippet: run
    static struct thing *thing;      (file-scope C the block relies on)
    -->

  snippet: compile   compile the block only (the default without a comment)
  snippet: run       also call it from main(); it must return 0
  snippet: skip      not C to compile (say why in the comment)
  snippet: run if=X  only where the build defines SNIPPET_X (e.g. if=UFFD:
                     the Linux bridge is built); elsewhere it is left out

Lines after the first line of the comment are placed at file scope, before
the function. `#line` directives make compiler messages point at README.md.
The generated main() runs the "run" snippets in order and prints each.
"""
import re
import sys

FENCE_OPEN = re.compile(r'^```c\s*$')
MARKER = re.compile(r'^<!--\s*snippet:\s*(\w+)(?:\s+if=(\w+))?\s*(-->)?$')


def parse(lines):
    snippets = []
    i = 0
    while i < len(lines):
        if not FENCE_OPEN.match(lines[i]):
            i += 1
            continue
        # Look back over blank lines for a marker comment ending at "-->".
        mode, cond, prelude, prelude_line = 'compile', None, [], 0
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and lines[j].strip().endswith('-->'):
            k = j
            while k >= 0 and not lines[k].lstrip().startswith('<!--'):
                k -= 1
            m = MARKER.match(lines[k].strip()) if k >= 0 else None
            if m:
                mode, cond = m.group(1), m.group(2)
                if not m.group(3):  # multi-line: C until the "-->" line
                    body = lines[k + 1:j + 1]
                    body[-1] = body[-1].rstrip()[:-3]
                    prelude, prelude_line = body, k + 2
            elif k >= 0 and 'snippet' in lines[k]:
                sys.exit('README.md:%d: malformed snippet marker' % (k + 1))
        if mode not in ('compile', 'run', 'skip'):
            sys.exit('README.md:%d: unknown snippet mode "%s"' % (j + 1, mode))
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].rstrip() != '```':
            i += 1
        if i == len(lines):
            sys.exit('README.md:%d: unterminated ```c block' % start)
        snippets.append(dict(mode=mode, cond=cond, prelude=prelude,
                             prelude_line=prelude_line,
                             code=lines[start:i], line=start + 1))
        i += 1
    return snippets


def generate(path, snippets):
    out = ['/* Generated from %s by tools/readme-snippets.py: do not edit. */'
           % path,
           '#include <errno.h>',
           '#include <pthread.h>',
           '#include <stdbool.h>',
           '#include <stdint.h>',
           '#include <stdio.h>',
           '#include <stdlib.h>',
           '#include <string.h>',
           '#include <sys/mman.h>',
           '#include <pagestate/pagestate.h>',
           '']
    runs = []
    for n, s in enumerate(snippets):
        if s['mode'] == 'skip':
            continue
        if s['cond']:
            out.append('#ifdef SNIPPET_%s' % s['cond'])
        if any(l.strip() for l in s['prelude']):
            out.append('#line %d "%s"' % (s['prelude_line'], path))
            out += s['prelude']
        out.append('#line %d "%s"' % (s['line'] - 1, path))
        out.append('static int snippet_%d(void)' % n)
        out.append('{')
        out += s['code']
        out.append('        return 0;')
        out.append('}')
        if s['cond']:
            out.append('#else')
            out.append('static int snippet_%d(void) { return 0; }' % n)
            out.append('#endif')
        out.append('')
        if s['mode'] == 'run':
            runs.append((n, s['line']))
    out.append('int main(void)')
    out.append('{')
    out.append('\tint failed = 0, rc;')
    out.append('')
    for n, s in enumerate(snippets):
        if s['mode'] == 'compile':
            out.append('\t(void)snippet_%d; /* compiled only */' % n)
    for n, line in runs:
        out.append('\trc = snippet_%d();' % n)
        out.append('\tprintf("README.md:%d: snippet %%s (%%d)\\n", '
                   'rc ? "FAILED" : "ok", rc);' % line)
        out.append('\tfailed |= rc != 0;')
    out.append('\tprintf("%d snippets compiled, %d run\\n");'
               % (sum(s['mode'] != 'skip' for s in snippets), len(runs)))
    out.append('\treturn failed ? EXIT_FAILURE : EXIT_SUCCESS;')
    out.append('}')
    return '\n'.join(out) + '\n'


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    lines = open(sys.argv[1], encoding='utf-8').read().split('\n')
    snippets = parse(lines)
    if not snippets:
        sys.exit('%s: no ```c blocks' % sys.argv[1])
    with open(sys.argv[2], 'w', encoding='utf-8') as f:
        f.write(generate('README.md', snippets))


if __name__ == '__main__':
    main()
