# SPDX-License-Identifier: MIT
# C source without its comments and string or character literals, for the
# meta checks (check-layers.sh, check-names.sh): awk -f c-scan.awk -f X.awk.
#
# c_code(line) returns @line with every comment and literal replaced by
# blanks (a literal by one blank), keeping state across lines in c_incomment
# (reset it at the start of each file). Preprocessor lines are the
# caller's: c_code() does not treat them specially.

function c_code(line,    out, n, i, c, d, q) {
	out = ""
	n = length(line)
	for (i = 1; i <= n; i++) {
		c = substr(line, i, 1)
		d = substr(line, i, 2)
		if (c_incomment) {
			if (d == "*/") {
				c_incomment = 0
				i++
				out = out "  "
			} else {
				out = out " "
			}
			continue
		}
		if (d == "/*") {
			c_incomment = 1
			i++
			out = out "  "
			continue
		}
		if (d == "//")
			break
		if (c == "\"" || c == "\047") {
			q = c
			for (i++; i <= n; i++) {
				c = substr(line, i, 1)
				if (c == "\\") {
					i++
					continue
				}
				if (c == q)
					break
			}
			out = out " "
			continue
		}
		out = out c
	}
	return out
}
