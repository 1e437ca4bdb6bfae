/* libFuzzer target for the operator tokens file (server/operator/auth.c):
 * the input is the file's text, parsed as vppd parses it at start and on
 * SIGHUP; a parsed set is then asked about a bearer header made from the
 * input's first line. A refusal must say which line; an accepted file
 * gives names that fit and roles that exist. */
#include "vpp/auth.h"
#include "vpp/error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 16))
		return 0;
	/* The file reader refuses NUL bytes: the text ends at the first. */
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	vpp_tokens *t = NULL;
	char err[200] = "";
	int rv = vpp_tokens_parse(text, &t, err, sizeof(err));
	if (rv == 0) {
		char auth[300];
		const char *nl = memchr(text, '\n', strlen(text));
		size_t n = nl ? (size_t)(nl - text) : strlen(text);
		snprintf(auth, sizeof(auth), "Bearer %.*s", (int)(n < 280 ? n : 280), text);
		const char *name = NULL;
		vpp_role role = vpp_tokens_check(t, auth, &name);
		if (role != VPP_ROLE_NONE && role != VPP_ROLE_VIEWER && role != VPP_ROLE_OPERATOR)
			abort();
		if (role != VPP_ROLE_NONE && (!name || strlen(name) > 63))
			abort();
		vpp_tokens_check(t, text, &name);
		vpp_tokens_free(t);
	} else if (rv != VPP_EINVAL || strncmp(err, "line ", 5) != 0) {
		if (rv != VPP_ENOMEM)
			abort();
	}
	free(text);
	return 0;
}
