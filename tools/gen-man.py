#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate the man pages from the public headers' kernel-doc blocks.

Usage: gen-man.py --version VERSION INCLUDE_DIR MAN3_DIR MAN7_DIR
       gen-man.py --list INCLUDE_DIR

Writes MAN3_DIR/<function>.3 for every public function (the functions
tools/check-docs.py checks, so every one has a complete block) and
MAN7_DIR/libpagestate.7, the overview: one section per header with its
summary line and its functions. Both directories are emptied first.
--list prints the names of the pages it would write, one a line.

A function's page has NAME (the heading's summary), SYNOPSIS (the #include
and the prototype; static inline functions say so), DESCRIPTION (the
summary and the free text), ARGUMENTS, CONTEXT, ORDERING, PROGRESS,
RETURN VALUE (each where the block has it) and SEE ALSO (the functions the
block mentions, and libpagestate(7)).

The output depends only on the headers and VERSION (no date), so the pages
are reproducible.
"""
import glob
import importlib.util
import os
import re
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    'check_docs', os.path.join(HERE, 'check-docs.py'))
check_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_docs)

SECTIONS = ('Context', 'Ordering', 'Progress', 'Return')
SECTION_TITLES = {'Context': 'CONTEXT', 'Ordering': 'ORDERING',
                  'Progress': 'PROGRESS', 'Return': 'RETURN VALUE'}
# A section keyword starts a line, or follows the end of a sentence on the
# line of another section ("Context: any thread. Ordering: relaxed.").
SECTION_RE = re.compile(r'(?:^|(?<=[.;])\s+)(%s):\s*' % '|'.join(SECTIONS),
                        re.M)
ATTRIBUTES = re.compile(r'\b(static|inline|PS_MUST_CHECK|PS_COLD|'
                        r'PS__SEQ_COLD|extern)\b')


def esc(text):
    """Escape text for roff: backslashes, and hyphens as ASCII minus signs
    (so that -EINVAL and lock-free copy out as typed)."""
    return text.replace('\\', '\\e').replace('-', '\\-')


def roff_lines(text):
    """Protect lines that roff would read as requests."""
    out = []
    for line in text.split('\n'):
        if line.startswith(('.', "'")):
            line = '\\&' + line
        out.append(line)
    return '\n'.join(out)


def inline(text, known):
    """Escape text and mark up @param and ps_function() references."""
    text = esc(text)
    text = re.sub(r'@(\w+)', r'\\fI\1\\fP', text)

    def fn(m):
        return '\\fB%s\\fP()' % m.group(1)
    text = re.sub(r'\b(ps_\w+)\(\)', fn, text)
    return text


def paragraphs(lines):
    """Group lines into paragraphs and bullet items.

    Returns a list of (kind, text) with kind 'p' (a paragraph) or 'li' (a
    bullet item, "- " at the start of an indented line).
    """
    out, cur, kind = [], [], 'p'

    def flush():
        if cur:
            out.append((kind, ' '.join(l.strip() for l in cur)))
        cur.clear()
    for line in lines:
        if not line.strip():
            flush()
            kind = 'p'
            continue
        m = re.match(r'^\s*-\s+(.*)$', line)
        if m:
            flush()
            kind = 'li'
            cur.append(m.group(1))
            continue
        if kind == 'li' and not line.startswith((' ', '\t')):
            flush()
            kind = 'p'
        cur.append(line)
    flush()
    return out


def render(paras, known, first=False):
    """Paragraphs as roff; first: they open a section (no .PP before)."""
    out = []
    for kind, text in paras:
        if kind == 'li':
            out.append('.IP \\(bu 2')
        elif not first:
            out.append('.PP')
        first = False
        out.append(roff_lines(inline(text, known)))
    return out


def sentence(text):
    """The summary as a sentence: capitalised unless it starts with a name."""
    word = text.split(' ', 1)[0]
    if text[:1].islower() and '_' not in word and '(' not in word:
        text = text[0].upper() + text[1:]
    return text


def parse_block(name, lines):
    """Split a kernel-doc block into summary, params, body and sections."""
    lines = [l.rstrip() for l in lines]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    head = re.sub(r'^%s\(\)\s+-\s+' % re.escape(name), '', lines.pop(0).strip())
    summary = [head]
    param_re = re.compile(r'^@(\w+|\.\.\.):\s*(.*)$')
    keyword_re = re.compile(r'^(%s):' % '|'.join(SECTIONS))
    while lines and lines[0].strip() and not param_re.match(lines[0]):
        summary.append(lines.pop(0).strip())
    # The arguments: each "@name:" line and its continuation lines, up to a
    # blank line or a section keyword.
    params = []
    while lines and lines[0].strip() and not keyword_re.match(lines[0]):
        line = lines.pop(0)
        m = param_re.match(line)
        if m:
            params.append([m.group(1), [m.group(2)]])
        elif params:
            params[-1][1].append(line.strip())
        else:
            lines.insert(0, line)
            break
    rest = '\n'.join(lines)
    # Cut the rest at each section keyword.
    cuts = list(SECTION_RE.finditer(rest))
    body = rest[:cuts[0].start()] if cuts else rest
    sections = {}
    for i, m in enumerate(cuts):
        end = cuts[i + 1].start() if i + 1 < len(cuts) else len(rest)
        text = rest[m.end():end].strip()
        key = m.group(1)
        sections[key] = (sections[key] + '\n\n' + text) if key in sections \
            else text
    return ' '.join(summary), params, body.split('\n'), sections


def prototype(src, start, end, params):
    """The prototype as roff: return type, bold name, italic parameters."""
    text = src[start:end]
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    text = ' '.join(text.split())
    is_inline = 'static' in text.split('(')[0] and 'inline' in text.split('(')[0]
    text = ATTRIBUTES.sub('', text)
    text = ' '.join(text.split())
    m = re.match(r'^(.*?)(ps_\w+)\s*\((.*)\)$', text, re.S)
    ret, name, args = m.group(1).strip(), m.group(2), m.group(3)
    star = ret.endswith('*')
    parts = []
    for a in [x.strip() for x in check_docs_split_args(args)]:
        p = a
        for pn in params:
            # Italicise the parameter's name where it stands in the text.
            mm = re.search(r'\b%s\b(?=\s*(\[|\)|$))' % re.escape(pn), a)
            if mm:
                p = esc(a[:mm.start()]) + '\\fI' + esc(pn) + '\\fP' + \
                    esc(a[mm.end():])
                break
        else:
            p = esc(a)
        parts.append((a, p))
    # Wrap at 78 columns, continuation lines under the first argument, as
    # the headers do.
    lead = ret + ('' if star else ' ') + name + '('
    lines, cur, width = [], esc(ret) + ('' if star else ' ') + '\\fB' + \
        name + '\\fP(', len(lead)
    for i, (plain, marked) in enumerate(parts):
        tail = ', ' if i + 1 < len(parts) else ');'
        if width + len(plain) + len(tail) > 78 and i > 0:
            lines.append(cur.rstrip())
            cur, width = ' ' * len(lead), len(lead)
        cur += marked + tail
        width += len(plain) + len(tail)
    if not parts:
        cur += ');'
    lines.append(cur)
    return '\n'.join(lines), is_inline


def check_docs_split_args(args):
    parts, depth, cur = [], 0, ''
    for c in args:
        if c in '([':
            depth += 1
        elif c in ')]':
            depth -= 1
        if c == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += c
    if cur.strip():
        parts.append(cur)
    return parts


def header_summary(src, header):
    """The header comment's first paragraph, without the file name."""
    m = re.search(r'/\*\s*\n(.*?)\*/', src, re.S)
    if not m:
        return ''
    text = []
    for l in m.group(1).split('\n'):
        l = re.sub(r'^\s*\*\s?', '', l)
        if not l.strip():
            if text:
                break
            continue
        text.append(l.strip())
    s = ' '.join(text)
    return re.sub(r'^pagestate/%s\s+-\s+' % re.escape(header), '', s)


def collect(incdir):
    """Every public function: a dict per function, in header order."""
    funcs = []
    headers = []
    for path in sorted(glob.glob(os.path.join(incdir, 'pagestate', '*.h'))):
        header = os.path.basename(path)
        src = open(path, encoding='utf-8').read()
        mine = []
        for name, ret, params, start, end in check_docs.functions(src):
            lines = check_docs.doc_block(src, start)
            if lines is None:
                raise SystemExit('%s: %s() has no kernel-doc block '
                                 '(tools/check-docs.py)' % (header, name))
            summary, pdocs, body, sections = parse_block(name, lines)
            proto, is_inline = prototype(src, start, end, params)
            mine.append(dict(name=name, header=header, summary=summary,
                             params=pdocs, body=body, sections=sections,
                             proto=proto, inline=is_inline,
                             text='\n'.join(lines)))
        headers.append((header, header_summary(src, header), mine))
        funcs += mine
    return headers, funcs


def mentions(text, funcs):
    names = {f['name'] for f in funcs}
    out = []
    for r in re.findall(r'\b(ps_\w+)\(\)', text):
        if r in names and r not in out:
            out.append(r)
    return out


def th(title, section, version):
    # No hyphenation, ragged right: names and errnos stay whole.
    return ['.TH %s %s "" "libpagestate %s" "libpagestate Manual"' %
            (title, section, version), '.nh', '.ad l']


def function_page(f, known, version):
    name = f['name']
    out = ['.\\" Generated by tools/gen-man.py from pagestate/%s; do not edit.'
           % f['header']]
    out += th(name.upper(), 3, version)
    out += ['.SH NAME', '%s \\- %s' % (name, esc(re.sub(r'@(\w+)', r'\1',
                                                         f['summary'])))]
    out += ['.SH SYNOPSIS', '.nf', '.B #include <pagestate/%s>' % f['header'],
            '.PP', roff_lines(f['proto']), '.fi']
    if f['inline']:
        out += ['.PP', 'A static inline function of the header.']
    out += ['.PP', 'Link with \\fI$(pkg\\-config \\-\\-static \\-\\-libs '
            'pagestate)\\fP.']
    out += ['.SH DESCRIPTION',
            roff_lines(inline(sentence(f['summary']), known))]
    out += render(paragraphs(f['body']), known)
    if f['params']:
        out += ['.SH ARGUMENTS']
        for pname, ptext in f['params']:
            out += ['.TP', '.I %s' % esc(pname),
                    roff_lines(inline(' '.join(t for t in ptext if t), known))]
    for key in SECTIONS:
        if key in f['sections']:
            out += ['.SH ' + SECTION_TITLES[key]]
            out += render(paragraphs(f['sections'][key].split('\n')), known,
                          first=True)
    # The functions this block mentions, and those whose blocks mention it.
    refs = [r for r in known.get(name, ()) if r != name]
    refs += [other for other, mentions in known.items()
             if name in mentions and other != name and other not in refs]
    see = ['.BR %s (3)' % r for r in sorted(refs)] + ['.BR libpagestate (7)']
    out += ['.SH SEE ALSO', ',\n'.join(see)]
    return '\n'.join(out) + '\n'


def overview_page(headers, version):
    out = ['.\\" Generated by tools/gen-man.py from the public headers; '
           'do not edit.']
    out += th('LIBPAGESTATE', 7, version)
    out += ['.SH NAME',
            'libpagestate \\- lock\\-free page\\-state primitives for VMMs '
            'and userspace DMA drivers',
            '.SH SYNOPSIS', '.nf', '.B #include <pagestate/pagestate.h>',
            '.PP',
            'cc \\-std=c11 app.c $(pkg\\-config \\-\\-static \\-\\-cflags '
            '\\-\\-libs pagestate)', '.fi',
            '.SH DESCRIPTION', '.PP',
            'libpagestate is a C11 library of lock\\-free page\\-state '
            'primitives: a page word (references, exact DMA pins and flags '
            'in one atomic 64\\-bit word), a lock\\-free radix page table '
            'with write\\-protect, faults and scans, a sequence counter and '
            'interval invalidation notifiers, an address space tying them '
            'together, per\\-page protection, and a Linux userfaultfd '
            'bridge.',
            '.PP',
            '.I pagestate/pagestate.h',
            'includes every header below. Each function has its own page in '
            'section 3; each header states its model and contracts in its '
            'comments.']
    for header, summary, funcs in headers:
        if not funcs:
            continue  # compiler.h (shims), pagestate.h (the umbrella)
        out += ['.SS pagestate/%s' % header, '.PP',
                roff_lines(inline(sentence(summary), set()))]
        for f in funcs:
            out += ['.TP', '.BR %s (3)' % f['name'],
                    roff_lines(inline(re.sub(r'@(\w+)', r'\1', f['summary']),
                                      set()))]
    out += ['.SH VERSIONS', '.PP',
            'The version is MAJOR.MINOR.PATCH '
            '(\\fBps_version\\fP(3), \\fIpagestate/version.h\\fP). While '
            'MAJOR is 0, every MINOR release may change the API and the ABI, '
            'and the shared library\'s SONAME carries it '
            '(libpagestate.so.0.MINOR); a PATCH release changes neither.',
            '.SH SEE ALSO', '.BR pkg\\-config (1)']
    return '\n'.join(out) + '\n'


def main(argv):
    if len(argv) == 2 and argv[0] == '--list':
        _, funcs = collect(argv[1])
        for f in funcs:
            print(f['name'] + '.3')
        print('libpagestate.7')
        return 0
    if len(argv) != 5 or argv[0] != '--version':
        print(__doc__)
        return 2
    version, incdir, man3, man7 = argv[1:5]
    headers, funcs = collect(incdir)
    known = {f['name']: mentions(f['text'], funcs) for f in funcs}
    for d in (man3, man7):
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
    for f in funcs:
        with open(os.path.join(man3, f['name'] + '.3'), 'w',
                  encoding='utf-8') as out:
            out.write(function_page(f, known, version))
    with open(os.path.join(man7, 'libpagestate.7'), 'w',
              encoding='utf-8') as out:
        out.write(overview_page(headers, version))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
