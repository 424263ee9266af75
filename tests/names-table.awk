# SPDX-License-Identifier: MIT
# The naming table at the top of include/pagestate/pagestate.h, as lines
#   HEADER fn PREFIX    a function prefix of HEADER (e.g. "page.h fn ps_page")
#   HEADER own NS       a namespace HEADER also owns (types, constants, macros)
#   HEADER row          once per header in the table
# The table starts at the comment line naming its columns ("header",
# "functions", "types") and ends at the first empty comment line after it;
# a row without a header continues the one above. Columns are found from
# the title line, so they may be moved. Usage: awk -f names-table.awk FILE
/^ \*   header +functions +types/ {
	intable = 1
	fcol = index($0, "functions")
	ocol = index($0, "types")
	next
}
intable && /^ \*[ \t]*$/ { exit }
intable {
	h = substr($0, 6, fcol - 6)
	gsub(/[ \t]/, "", h)
	if (h != "") {
		header = h
		print header " row"
	}
	nf = split(substr($0, fcol, ocol - fcol), f, /[ \t]+/)
	for (i = 1; i <= nf; i++)
		if (f[i] != "" && f[i] != "-")
			print header " fn " f[i]
	no = split(substr($0, ocol), o, /[ \t]+/)
	for (i = 1; i <= no; i++)
		if (o[i] != "")
			print header " own " o[i]
}
