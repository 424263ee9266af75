// SPDX-License-Identifier: MIT
/* An outside program, built by check-install.sh from the installed tree. */
#include <pagestate/pagestate.h>

#include <stdio.h>

int main(void)
{
	struct ps_page page = PS_PAGE_INIT(1);

	if (ps_page_pin(&page) != 0 || !ps_page_is_pinned(&page))
		return 1;
	if (ps_page_unpin(&page) || !ps_page_put(&page))
		return 1;
	puts("consumer: linked against the installed libpagestate");
	return 0;
}
