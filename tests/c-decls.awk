# SPDX-License-Identifier: MIT
# What a C header declares at file scope, as "FILE<TAB>LINE<TAB>KIND<TAB>NAME"
# lines: KIND is func (a function declared or defined), type (a struct,
# union or enum tag with a body, a typedef name), const (an enum constant)
# or macro (#define). Needs c-scan.awk: awk -f c-scan.awk -f c-decls.awk.
# Prototypes may span lines; preprocessor conditionals are read through
# (both branches count). Identifiers starting with an underscore and
# all-capital ones followed by "(" (macro calls) are never functions.

function emit(kind, name) {
	print FILENAME "\t" FNR "\t" kind "\t" name
}

function token(t) {
	# A tag (or a bare struct/union/enum) counts only right before "{".
	if (tagkw != "" && t != "{" && !(tag == "" && t ~ /^[A-Za-z_]/)) {
		tag = ""; tagkw = ""
	}
	if (t == "{") {
		if (tagkw != "" && depth == 0) {
			if (tag != "")
				emit("type", tag)
			if (tagkw == "enum") {
				enum_depth = 1
				want_const = 1
			}
		}
		tag = ""; tagkw = ""
		depth++
	} else if (t == "}") {
		depth--
		if (depth < enum_depth)
			enum_depth = 0
	} else if (t == "(") {
		if (depth == 0 && paren == 0) {
			if (typedef_on && !typedef_done)
				fp_next = 1
			else if (!typedef_on && prev ~ /^[A-Za-z][A-Za-z0-9_]*$/ &&
				 prev ~ /[a-z]/ && !(prev in keyword))
				emit("func", prev)
		}
		paren++
	} else if (t == ")") {
		paren--
	} else if (t == ";") {
		if (depth == 0 && paren == 0) {
			if (typedef_on && !typedef_done && last != "")
				emit("type", last)
			typedef_on = 0; typedef_done = 0; last = ""
		}
	} else if (t == ",") {
		if (enum_depth && depth == enum_depth && paren == 0)
			want_const = 1
	} else if (t ~ /^[A-Za-z_]/) {
		if (depth == 0 && t == "typedef") {
			typedef_on = 1
		} else if (t == "struct" || t == "union" || t == "enum") {
			tagkw = t
			tag = ""
		} else if (tagkw != "" && tag == "") {
			tag = t
		} else if (enum_depth && depth == enum_depth && want_const) {
			emit("const", t)
			want_const = 0
		}
		if (fp_next && prev == "*" && depth == 0) {
			emit("type", t)	# typedef R (*name)(...)
			typedef_done = 1
		}
		fp_next = 0
		if (depth == 0 && paren == 0)
			last = t
	}
	if (t != "*" && t != "(")
		fp_next = 0
	prev = t
}

BEGIN {
	split("if while for switch return sizeof defined alignof typeof", k, " ")
	for (i in k)
		keyword[k[i]] = 1
}

FNR == 1 {
	c_incomment = 0; cont = 0; depth = 0; paren = 0; enum_depth = 0
	typedef_on = 0; typedef_done = 0; tag = ""; tagkw = ""; prev = ""
	last = ""; fp_next = 0
}

{
	if (cont) {
		cont = /\\$/
		next
	}
	if (!c_incomment && /^[ \t]*#/) {
		if (match($0, /^[ \t]*#[ \t]*define[ \t]+[A-Za-z_][A-Za-z0-9_]*/)) {
			d = substr($0, RSTART, RLENGTH)
			sub(/^[ \t]*#[ \t]*define[ \t]+/, "", d)
			emit("macro", d)
		}
		cont = /\\$/
		next
	}
	code = c_code($0)
	while (match(code, /[A-Za-z_][A-Za-z0-9_]*|[{}();,*=]/)) {
		token(substr(code, RSTART, RLENGTH))
		code = substr(code, RSTART + RLENGTH)
	}
}
