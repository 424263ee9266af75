#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check the layout of C comments that clang-format leaves alone.

Usage: reflow-check.py [--fix] FILE...
       reflow-check.py --root DIR      (every C/C++ file of the project)
       reflow-check.py --self-test

The project's .clang-format has ReflowComments off, because clang-format's
reflow breaks ASCII diagrams, tables and code inside comments. This script
checks what reflow would have kept right:

  1. No line is wider than 80 columns (tabs count to the next multiple of
     8), in comments or anywhere else: clang-format cannot shorten a comment
     or a string literal.
  2. The continuation lines of a comment that follows code on its first
     line keep their star under the opening's star (clang-format moves a
     trailing comment's opening to align it, not the lines after it).
  3. No comment paragraph is ragged: refilled greedily within 80 columns,
     it would not take fewer lines than it does. That is what a paragraph
     looks like after an edit left a line short and nobody refilled it.
     (A per-line test, "the next line's first word would fit at the end
     of this one", is too strict for this tree: its comments are mostly
     filled at 74 to 77 columns, and that test flags most of their lines.
     It is the fixer's rule for where a refill begins, below.)

What is prose. A block comment's lines are split at blank lines into
paragraphs. A line that is not prose ends its paragraph and is never
checked:
  - a line with two spaces or a tab inside its text (tables, diagrams,
    aligned columns, code with trailing comments);
  - a line with |, +-, ---, ===, //, or one that starts with # { } or ends
    with ; { } or a backslash (code in a comment);
  - a comment that follows code on its first line (rule 2 only);
  - the lines that continue a table cell: a paragraph that starts, under a
    table row, where one of the row's cells starts;
  - a paragraph indented 8 columns or more beyond the comment's text that
    is not a bulleted item: a code block, or a column of a diagram or
    timeline.
A list item starts a new paragraph: "- ", "* ", "1. ", "(a) ", a label such
as "M1  " or "G7  ", a kernel-doc "@arg:" (or "@a, @b:") or a section
word followed by a colon ("Context:", "Return:"). Items are never joined:
only an item's own continuation lines are refilled, under its indent.
After an item's first line, its continuation lines must share one indent
(a hanging indent is fine); after a plain line, they must have its indent.
A line at another indent starts a new paragraph (a code block or a nested
list).

--fix refills every ragged paragraph: the lines before the first one it
has to change stay, the refill starts at the latest line from which it
still reaches the fewest lines, moved up while the line above has room for
the refill's first word, and it keeps each line's comment prefix and the
paragraph's indents (its marker, its hanging indent). It also shortens
"/* --- name --- */" separator lines wider than 80 columns to 80. Read the
diff: what else the check reports (wide code, wide diagrams, one-line
comments) is for a person to fix.

Exit status: 0 clean, 1 with a list of file:line: problem.
"""
import os
import re
import sys

WIDTH = 80
TAB = 8
INDENTED = 8    # a block indented this much (no marker) is code or a diagram
FILE_RE = re.compile(r'\.(c|h|cc)$')
DIRS = ('include', 'lib', 'tests', 'bench', 'examples', 'fuzz')

MARKER_RE = re.compile(
    r'(?:[-*+] '                       # - item, * item
    r'|\d+[.)] '                       # 1. item, 2) item
    r'|\([a-zA-Z0-9]{1,4}\) '          # (a) item, (iv) item
    r'|@[\w.]+(?:, @[\w.]+)*:(?: |$)'  # kernel-doc @arg:, @a, @b:
    r'|[A-Z]{1,3}\d+(?:\.\d+)?[a-z]?:?(?: |$)'  # labels: M1, G7, A.1, S3a
    r'|[A-Z][A-Za-z-]*(?: [a-z-]+)?:(?: |$)'  # Context:, Return:, Note:
    r')')
BULLET_RE = re.compile(r'(?:[-*+]|\d+[.)]|\([a-zA-Z0-9]{1,4}\)) ')
CODE_RE = re.compile(r'\||\+-|---|===|//|^[#{}]|[;{}\\]$')


def width(s):
    col = 0
    for c in s:
        col = (col // TAB + 1) * TAB if c == '\t' else col + 1
    return col


def find_comments(src):
    """Yield (start_offset, end_offset) of each /* */ comment in src."""
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == '/' and src.startswith('/*', i):
            j = src.find('*/', i + 2)
            j = n if j < 0 else j + 2
            yield i, j
            i = j
        elif c == '/' and src.startswith('//', i):
            j = src.find('\n', i)
            i = n if j < 0 else j
        elif c in '"\'':
            j = i + 1
            while j < n and src[j] != c and src[j] != '\n':
                j += 2 if src[j] == '\\' else 1
            i = j + 1
        else:
            i += 1


class Line:
    """One line of a block comment: prefix (kept verbatim) and text."""

    def __init__(self, no, full, prefix, text, closes):
        self.no = no            # 0-based line number in the file
        self.full = full        # the whole line
        self.prefix = prefix    # up to where the text starts
        self.text = text        # without the closing */ (and the space)
        self.closes = closes    # the line ends the comment after text
        self.col = width(prefix + text[:len(text) - len(text.lstrip())])
        self.body = text.strip()
        self.marker = None
        self.kind = 'blank' if not self.body else 'prose'
        if self.kind == 'prose':
            m = MARKER_RE.match(self.body)
            rest = self.body
            if m:
                self.marker = m.group(0)
                rest = self.body[m.end():].lstrip(' ')
            if '  ' in rest or '\t' in rest or CODE_RE.search(self.body):
                self.kind = 'structured'


def comment_lines(lines, first, last, start_col_text):
    """Split the comment on lines[first..last] into Line objects, or None
    when it is not a regular block comment (a star on every line)."""
    out = []
    for no in range(first, last + 1):
        full = lines[no]
        if no == first:
            k = full.index('/*', len(start_col_text))
            m = re.match(r'/\*+ ?', full[k:])
            prefix = full[:k + m.end()]
            rest = full[k + m.end():]
        else:
            m = re.match(r'\s*\*(?!/)(?: |\t|$)', full)
            if not m:
                m = re.match(r'\s*(?=\*/)', full)
                if not m:
                    return None
            prefix = full[:m.end()]
            rest = full[m.end():]
        closes = False
        if no == last:
            if not rest.rstrip().endswith('*/'):
                return None
            rest = rest.rstrip()[:-2].rstrip()
            closes = True
        out.append(Line(no, full, prefix, rest.rstrip(), closes))
    return out


def cell_columns(full):
    """The columns where a table cell starts in a line: after two or more
    spaces, or a tab, inside the line's text."""
    cols, col, gap, seen = set(), 0, 0, False
    for c in full:
        if c in ' \t':
            gap += 2 if c == '\t' else 1
            col = (col // TAB + 1) * TAB if c == '\t' else col + 1
            continue
        if seen and gap >= 2:
            cols.add(col)
        if c != '*' and c != '/':
            seen = True
        gap = 0
        col += 1
    return cols


def paragraphs(clines):
    """Group the prose lines of one comment into paragraphs (lists of
    Line objects). A paragraph that continues a cell of the table row
    above it (it starts where a cell of that row starts) is a table's, and
    one indented by INDENTED columns or more without a list marker is a
    code block or a diagram: neither is prose, and both are left out."""
    para, cont, prev, table = [], None, None, False
    base = min([ln.col for ln in clines if ln.kind != 'blank'] or [0])
    for ln in clines:
        if ln.kind != 'prose':
            if para and not table:
                yield para
            para, cont, prev = [], None, ln
            continue
        if para and ln.marker is None:
            head = para[0]
            if cont is None:
                ok = (ln.col >= head.col if head.marker is not None
                      else ln.col == head.col)
            else:
                ok = ln.col == cont
            if ok:
                para.append(ln)
                cont = ln.col
                prev = ln
                continue
        if para and not table:
            yield para
        bullet = ln.marker is not None and BULLET_RE.match(ln.marker)
        table = ((ln.col - base >= INDENTED and not bullet) or
                 (ln.marker is None and prev is not None and
                  prev.kind == 'structured' and
                  ln.col in cell_columns(prev.full)))
        para, cont, prev = [ln], None, ln
    if para and not table:
        yield para


def has_room(para, i, word):
    """Could para[i] take word at its end within WIDTH columns?"""
    return width(para[i].full.rstrip()) + 1 + len(word) <= WIDTH


def refill_start(para, limit=None):
    """(needed, start): the fewest lines para can take within WIDTH
    columns, and where a greedy refill that reaches that count starts.
    The lines before start stay as they are: start is the last line from
    which the refill reaches the count, moved up while the line above has
    room for the refill's first word (so that the seam is not ragged
    either). limit bounds start (a line wider than WIDTH must be
    refilled)."""
    needed = len(refill(para, 0))
    if limit is None:
        limit = len(para) - 1
    start = 0
    for s in range(limit, 0, -1):
        if s + len(refill(para, s)) == needed:
            start = s
            break
    while start > 0:
        first = refill(para, start)[0]
        word = first[len(para[start].prefix):].split()[0]
        if not has_room(para, start - 1, word):
            break
        start -= 1
    return needed, start


def refill(para, start):
    """New lines for para[start:], refilled greedily: the first keeps its
    prefix, indent and marker, the others take the indent of the line
    after para[start] (para[start]'s own when it is the last)."""
    def lead(ln):
        return ln.prefix + ln.text[:len(ln.text) - len(ln.text.lstrip())]

    head = para[start]
    first_lead = lead(head)
    cont_lead = lead(para[min(start + 1, len(para) - 1)])
    words = []
    for k, ln in enumerate(para[start:]):
        body = ln.body
        if k == 0 and ln.marker is not None:
            # Keep the marker and the spaces after it verbatim.
            m = re.match(re.escape(ln.marker) + r'\s*', body)
            first_lead += body[:m.end()]
            body = body[m.end():]
        words += body.split()
    if para[-1].closes:
        words[-1] += ' */'
    # Greedy, except that no new line may start like a list item ("- x",
    # "1. x", "@a: x"): the word before goes down with it.
    lines = [[]]
    for i, w in enumerate(words):
        cur = lines[-1]
        lead = first_lead if len(lines) == 1 else cont_lead
        if not cur or width(lead + ' '.join(cur + [w])) <= WIDTH:
            cur.append(w)
            continue
        if len(cur) > 1 and MARKER_RE.match(' '.join(words[i:i + 2])):
            lines.append([cur.pop(), w])
        else:
            lines.append([w])
    return [(first_lead if k == 0 else cont_lead) + ' '.join(ws)
            for k, ws in enumerate(lines)]


def check_file(path, fix=False):
    src = open(path, encoding='utf-8').read()
    lines = src.split('\n')
    problems = []
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)

    def line_of(off):
        lo, hi = 0, len(lines)
        while lo < hi:
            mid = (lo + hi) // 2
            if starts[mid + 1] <= off:
                lo = mid + 1
            else:
                hi = mid
        return lo

    edits = []     # (first, last, new_lines) replacing lines[first..last]
    for a, b in find_comments(src):
        first, last = line_of(a), line_of(b - 1)
        before = src[starts[first]:a]
        if first == last:
            continue        # one-line comments
        if before.strip():
            # A comment after code is not reflowed, but its continuation
            # lines must stay under its opening (clang-format moves the
            # opening when it aligns trailing comments, not the rest).
            star = width(before) + 1
            for no in range(first + 1, last + 1):
                m = re.match(r'\s*\*', lines[no])
                if not m or width(lines[no][:m.end()]) - 1 != star:
                    problems.append((no, 'comment after code: this line '
                                     'is not aligned under its /*'))
            continue
        clines = comment_lines(lines, first, last, before)
        if clines is None:
            continue
        for para in paragraphs(clines):
            if len(para) < 2:
                continue
            wide = [i for i, ln in enumerate(para)
                    if width(ln.full.rstrip()) > WIDTH]
            needed, start = refill_start(para, min(wide or [len(para) - 1]))
            if needed < len(para):
                problems.append((para[start].no, 'ragged comment paragraph: '
                                 '%d lines from here, %d refilled' %
                                 (len(para) - start, needed - start)))
            if fix and (needed < len(para) or wide):
                edits.append((para[start].no, para[-1].no,
                              refill(para, start)))
    sep_re = re.compile(r'^(\s*)/\* --- (.*?) -+ \*/$')
    for no, ln in enumerate(lines):
        w = width(ln.rstrip())
        if w > WIDTH:
            m = sep_re.match(ln)
            if fix and m:
                lead = '%s/* --- %s ' % (m.group(1), m.group(2))
                dashes = WIDTH - width(lead) - 3
                if dashes >= 3:
                    edits.append((no, no, [lead + '-' * dashes + ' */']))
                    continue
            problems.append((no, 'line is %d columns wide (over %d)' %
                             (w, WIDTH)))
    if fix and edits:
        for first, last, new in sorted(edits, reverse=True):
            lines[first:last + 1] = new
        open(path, 'w', encoding='utf-8').write('\n'.join(lines))
    return sorted(set(problems))


def project_files(root):
    out = []
    for d in DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, d)):
            dirnames.sort()
            out += [os.path.join(dirpath, f) for f in sorted(filenames)
                    if FILE_RE.search(f)]
    return out


SELF_TEST_BAD = '''\
/*
 * A paragraph whose first line was left short:
 * this line could have moved up.
 */
int x; /* a comment after code is never reflowed, and this one is @@ */
/*
 * M1  A label with a hanging indent whose continuation is ragged, which
 *     the check
 *     sees.
 */
/* --- a section separator that is too wide --------------------------@@ */
int y; /* a trailing comment
    * whose star is not under the opening's */
'''
SELF_TEST_BAD_LINES = {2, 5, 7, 11, 13}
SELF_TEST_FIXED = '''\
/*
 * A paragraph whose first line was left short: this line could have moved up.
 */
int x; /* a comment after code is never reflowed, and this one is @@ */
/*
 * M1  A label with a hanging indent whose continuation is ragged, which the
 *     check sees.
 */
/* --- a section separator that is too wide --------------------------------- */
int y; /* a trailing comment
    * whose star is not under the opening's */
'''
SELF_TEST_FIXED_LINES = {4, 11}

SELF_TEST_GOOD = '''\
/*
 * A full paragraph of prose whose lines each end where the next word would no
 * longer fit, as a refill leaves them; its last line may be short.
 *
 * Lists, tables, diagrams and code are not prose:
 *   - an item,
 *   - another item whose text runs on and on until it has to wrap onto its
 *     second line.
 *   name        meaning
 *   x           the first
 *   y           the second, whose meaning takes more words than its cell
 *               holds
 *               on one line
 *   +----+----+
 *   | a  | b  |
 *   +----+----+
 *	do {
 *		seq = read_begin(s);
 *	} while (retry(s, seq));
 *   reader                      writer
 *                                 start()
 *                                   P1: published
 *                                   callback: lock(user)
 * @arg: a kernel-doc argument.
 * @start, @last: another, for two.
 * @other: a third one, whose description is long enough to wrap onto a
 *	second line under a tab.
 * Context: any.
 * Return: 0.
 */
/* A one-line comment. */
'''


def self_test():
    import tempfile
    global SELF_TEST_BAD, SELF_TEST_FIXED
    # @@ makes a line too wide (kept short here, in the source).
    SELF_TEST_BAD = SELF_TEST_BAD.replace('@@', '-' * 30)
    SELF_TEST_FIXED = SELF_TEST_FIXED.replace('@@', '-' * 30)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, 'bad.c')
        good = os.path.join(tmp, 'good.c')
        open(bad, 'w').write(SELF_TEST_BAD)
        open(good, 'w').write(SELF_TEST_GOOD)
        got = {no + 1 for no, _ in check_file(bad)}
        if got != SELF_TEST_BAD_LINES:
            print('self-test: bad.c flagged lines %s, want %s' %
                  (sorted(got), sorted(SELF_TEST_BAD_LINES)))
            ok = False
        got = check_file(good)
        if got:
            print('self-test: good.c flagged %s' %
                  ['%d: %s' % (no + 1, what) for no, what in got])
            ok = False
        # --fix refills the ragged paragraphs and shortens the separator;
        # what remains (a wide line after code, a misaligned trailing
        # comment) is for a person.
        check_file(bad, fix=True)
        got = {no + 1 for no, _ in check_file(bad)}
        if got != SELF_TEST_FIXED_LINES or open(bad).read() != SELF_TEST_FIXED:
            print('self-test: after --fix, bad.c flagged %s, want %s' %
                  (sorted(got), sorted(SELF_TEST_FIXED_LINES)))
            print(open(bad).read())
            ok = False
    # A refill never starts a line with what reads as a list marker.
    text = '/*\n * a %s - b\n * c.\n */' % ('x' * 74)
    lines = text.split('\n')
    para = next(paragraphs(comment_lines(lines, 0, len(lines) - 1, '')))
    got = refill(para, 0)
    if any(MARKER_RE.match(ln[3:]) for ln in got[1:]):
        print('self-test: a refill starts a line with a marker: %s' % got)
        ok = False
    print('reflow-check self-test: %s' % ('passed' if ok else 'FAILED'))
    return 0 if ok else 1


def main(argv):
    fix = False
    files = []
    args = argv[1:]
    if args == ['--self-test']:
        return self_test()
    if args and args[0] == '--fix':
        fix, args = True, args[1:]
    if len(args) == 2 and args[0] == '--root':
        files = project_files(args[1])
        base = args[1]
    else:
        files, base = args, None
    if not files:
        print(__doc__.split('\n\n')[1])
        return 2
    total = 0
    for f in files:
        for no, what in check_file(f, fix):
            name = os.path.relpath(f, base) if base else f
            print('%s:%d: %s' % (name, no + 1, what))
            total += 1
    if total:
        print('reflow-check: %d problems in %d files' % (total, len(files)))
        return 1
    print('reflow-check: %d files clean' % len(files))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
