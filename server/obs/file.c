/* Small files read whole (include/vpp/file.h). */
#include "vpp/file.h"
#include "vpp/error.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int vpp_file_read_small(const char *path, size_t max, char **ret, size_t *len, char *err,
			size_t errlen)
{
	FILE *f = fopen(path, "r");
	struct stat st;
	if (!f) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return VPP_EINVAL;
	}
	if (fstat(fileno(f), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode))) {
		fclose(f);
		snprintf(err, errlen, "not a regular file");
		return VPP_EINVAL;
	}
	char *buf = malloc(max + 1);
	size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
	bool failed = ferror(f);
	fclose(f);
	if (!buf)
		return VPP_ENOMEM;
	if (failed || n > max || memchr(buf, 0, n)) {
		snprintf(err, errlen, "%s", failed ? "read error"
					    : n > max ? "too large"
						      : "has a NUL byte");
		OPENSSL_cleanse(buf, n);
		free(buf);
		return VPP_EINVAL;
	}
	buf[n] = 0;
	*ret = buf;
	*len = n;
	return 0;
}
