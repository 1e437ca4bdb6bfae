/* vpp-plan's fleet CSV: a header naming the columns, then one line per
 * device, each value checked (see the usage text in tools/vpp-plan.c). */
#include "plan_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpp/error.h"

enum {
	C_ID,
	C_RATED_CHARGE,
	C_RATED_DISCHARGE,
	C_CAPACITY,
	C_SOC,
	C_MIN_SOC,
	C_MAX_SOC,
	C_RAMP,
	C_POWER,
	C_AVAIL,
	C_COUNT
};

static const char *const col_names[C_COUNT] = {
	"id",	   "rated_charge_kw", "rated_discharge_kw", "capacity_kwh", "soc",
	"min_soc", "max_soc",	      "ramp_kw_per_s",	    "power_kw",	    "availability",
};

static int fleet_grow(vpp__plan_fleet *fl)
{
	size_t ncap = fl->cap ? 2 * fl->cap : 1024;
	void *np;

#define GROW(x)                                                                            \
	np = realloc(fl->x, ncap * sizeof(*fl->x));                                        \
	if (np == NULL)                                                                    \
		return VPP_ENOMEM;                                                         \
	fl->x = np;
	GROW(id) GROW(line) GROW(rt) GROW(soc) GROW(power) GROW(a) GROW(lo) GROW(hi)
	GROW(edis) GROW(echg) GROW(p)
#undef GROW
	fl->cap = ncap;
	return 0;
}

void vpp__plan_fleet_free(vpp__plan_fleet *fl)
{
	for (size_t i = 0; i < fl->n; i++)
		free(fl->id[i]);
	free(fl->id);
	free(fl->line);
	free(fl->rt);
	free(fl->soc);
	free(fl->power);
	free(fl->a);
	free(fl->lo);
	free(fl->hi);
	free(fl->edis);
	free(fl->echg);
	free(fl->p);
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* Splits |line| on commas in place; returns the number of fields (at most
 * |max|, or max + 1 meaning "too many"). */
static size_t split(char *line, char **fields, size_t max)
{
	size_t n = 0;
	char *p = line;

	for (;;) {
		char *c = strchr(p, ',');

		if (n == max)
			return max + 1;
		if (c != NULL)
			*c = '\0';
		fields[n++] = trim(p);
		if (c == NULL)
			return n;
		p = c + 1;
	}
}

int vpp__plan_parse_num(const char *s, double *out)
{
	char *end;
	double v;

	if (*s == '\0')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (*end != '\0' || errno == ERANGE || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

/* Writes "PATH:LINE: reason" into |err|. */
static void bad(char *err, size_t errlen, const char *path, size_t line, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void bad(char *err, size_t errlen, const char *path, size_t line, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, errlen, "%s:%zu: ", path, line);

	if (n < 0 || (size_t)n >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static int cmp_idx_by_id(const void *x, const void *y, void *arg)
{
	char **ids = arg;

	return strcmp(ids[*(const size_t *)x], ids[*(const size_t *)y]);
}

int vpp__plan_read_fleet(FILE *in, const char *path, vpp__plan_fleet *fl, char *err,
			 size_t errlen)
{
	enum { MAXF = 64 };
	char *buf = NULL, *fields[MAXF + 1];
	size_t bufcap = 0, lineno = 0, nf_header = 0, i;
	int col[C_COUNT], have_header = 0, rv = 1;
	ssize_t len;

	for (i = 0; i < C_COUNT; i++)
		col[i] = -1;
	while ((len = getline(&buf, &bufcap, in)) != -1) {
		double v[C_COUNT];
		size_t nf, c;
		char *line;

		lineno++;
		if (strlen(buf) != (size_t)len) {
			bad(err, errlen, path, lineno, "%s", "NUL byte in line");
			goto out;
		}
		line = trim(buf);
		if (*line == '\0' || *line == '#')
			continue;
		nf = split(line, fields, MAXF);
		if (nf > MAXF) {
			bad(err, errlen, path, lineno, "more than %d fields", MAXF);
			goto out;
		}
		if (!have_header) {
			for (c = 0; c < nf; c++) {
				for (i = 0; i < C_COUNT; i++) {
					if (strcmp(fields[c], col_names[i]) != 0)
						continue;
					if (col[i] >= 0) {
						bad(err, errlen, path, lineno, "duplicate column '%s'",
						    col_names[i]);
						goto out;
					}
					col[i] = (int)c;
				}
			}
			for (i = 0; i < C_COUNT; i++) {
				if (col[i] < 0) {
					bad(err, errlen, path, lineno, "missing column '%s' in header",
					    col_names[i]);
					goto out;
				}
			}
			nf_header = nf;
			have_header = 1;
			continue;
		}
		if (nf != nf_header) {
			bad(err, errlen, path, lineno, "%zu fields, the header has %zu", nf, nf_header);
			goto out;
		}
		if (*fields[col[C_ID]] == '\0') {
			bad(err, errlen, path, lineno, "%s", "empty id");
			goto out;
		}
		for (i = 1; i < C_COUNT; i++) {
			if (vpp__plan_parse_num(fields[col[i]], &v[i]) != 0) {
				bad(err, errlen, path, lineno, "column '%s' is not a finite number",
				    col_names[i]);
				goto out;
			}
		}
		if (v[C_RATED_CHARGE] < 0 || v[C_RATED_DISCHARGE] < 0) {
			bad(err, errlen, path, lineno, "%s", "negative power rating");
			goto out;
		}
		if (v[C_CAPACITY] < 0) {
			bad(err, errlen, path, lineno, "%s", "negative capacity_kwh");
			goto out;
		}
		if (v[C_SOC] < 0 || v[C_SOC] > 1) {
			bad(err, errlen, path, lineno, "%s", "soc outside 0..1");
			goto out;
		}
		if (v[C_MIN_SOC] < 0 || v[C_MIN_SOC] > 1 || v[C_MAX_SOC] < 0 || v[C_MAX_SOC] > 1) {
			bad(err, errlen, path, lineno, "%s", "min_soc/max_soc outside 0..1");
			goto out;
		}
		if (v[C_MIN_SOC] > v[C_MAX_SOC]) {
			bad(err, errlen, path, lineno, "%s", "min_soc > max_soc");
			goto out;
		}
		if (v[C_RAMP] < 0) {
			bad(err, errlen, path, lineno, "%s", "negative ramp_kw_per_s");
			goto out;
		}
		if (v[C_AVAIL] < 0 || v[C_AVAIL] > 1) {
			bad(err, errlen, path, lineno, "%s", "availability outside 0..1");
			goto out;
		}
		if (fl->n == fl->cap && fleet_grow(fl) != 0) {
			bad(err, errlen, path, lineno, "%s", "out of memory");
			goto out;
		}
		fl->id[fl->n] = strdup(fields[col[C_ID]]);
		if (fl->id[fl->n] == NULL) {
			bad(err, errlen, path, lineno, "%s", "out of memory");
			goto out;
		}
		fl->line[fl->n] = lineno;
		fl->rt[fl->n] = (vpp_device_ratings){
			.rated_charge_kw = v[C_RATED_CHARGE],
			.rated_discharge_kw = v[C_RATED_DISCHARGE],
			.capacity_kwh = v[C_CAPACITY],
			.min_soc = v[C_MIN_SOC],
			.max_soc = v[C_MAX_SOC],
			.ramp_kw_per_s = v[C_RAMP],
		};
		fl->soc[fl->n] = v[C_SOC];
		fl->power[fl->n] = v[C_POWER];
		fl->a[fl->n] = v[C_AVAIL];
		fl->n++;
	}
	if (ferror(in)) {
		snprintf(err, errlen, "%s: read error", path);
		goto out;
	}
	if (!have_header) {
		bad(err, errlen, path, lineno, "%s", "no header line");
		goto out;
	}
	/* Duplicate ids: sort an index, report the later line. */
	if (fl->n > 1) {
		size_t *idx = malloc(fl->n * sizeof(*idx));

		if (idx == NULL) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		for (i = 0; i < fl->n; i++)
			idx[i] = i;
		qsort_r(idx, fl->n, sizeof(*idx), cmp_idx_by_id, fl->id);
		for (i = 1; i < fl->n; i++) {
			if (strcmp(fl->id[idx[i - 1]], fl->id[idx[i]]) == 0) {
				size_t l = fl->line[idx[i - 1]] > fl->line[idx[i]]
						   ? fl->line[idx[i - 1]]
						   : fl->line[idx[i]];

				bad(err, errlen, path, l, "duplicate id '%s'", fl->id[idx[i]]);
				free(idx);
				goto out;
			}
		}
		free(idx);
	}
	rv = 0;
out:
	free(buf);
	return rv;
}
