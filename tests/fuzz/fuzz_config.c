/* libFuzzer target for vppd's INI settings file: the input is written to
 * a file and read with --config=FILE through vppd's own table
 * (server/vppd_config.c, server/obs/config.c, libinih), as vppd reads it at
 * start. Every failure must come with a message; every accepted file gives
 * values within the table's bounds. */
#include "../../server/vppd_int.h"
#include "vpp/error.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[256];

static void check_bounds(const vppd_config *c)
{
	for (size_t i = 0; i < vppd_config_table_len; i++) {
		const vpp_config_opt *o = &vppd_config_table[i];
		const char *f = (const char *)c + o->offset;
		if (o->type == VPP_CFG_INT) {
			int64_t v;
			memcpy(&v, f, sizeof(v));
			if ((double)v < o->min || (double)v > o->max)
				abort();
		} else if (o->type == VPP_CFG_DOUBLE) {
			double v;
			memcpy(&v, f, sizeof(v));
			if (!isfinite(v) || v < o->min || v > o->max)
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!path[0]) {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(path, sizeof(path), "%s/vpp-fuzz-config.XXXXXX", base);
		int fd = mkstemp(path);
		if (fd < 0)
			abort();
		close(fd);
		/* Only the file speaks: no VPP_* variable of the caller's. */
		for (size_t i = 0; i < vppd_config_table_len; i++) {
			char env[128] = "VPP_";
			size_t j = 4;
			for (const char *p = vppd_config_table[i].name; *p && j + 1 < sizeof(env);
			     p++)
				env[j++] =
				    *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
			env[j] = 0;
			unsetenv(env);
		}
	}
	if (size > (1u << 16))
		return 0;
	int fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);

	char flag[300];
	snprintf(flag, sizeof(flag), "--config=%s", path);
	char *argv[] = {"vppd", flag, NULL};
	vppd_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	int pos[4], npos = 0;
	bool help = false;
	char err[512] = "";
	int rv = vpp_config_parse(vppd_config_table, vppd_config_table_len, &cfg, 2, argv, pos, 4,
	                          &npos, &help, err, sizeof(err));
	if (rv == 0)
		check_bounds(&cfg);
	else if (!err[0])
		abort();
	vpp_config_free(vppd_config_table, vppd_config_table_len, &cfg);
	return 0;
}
