/* Numbers as an operator reads them: thousands separators, one decimal for
 * power, intervals, ages and local times. */
#include "ctl_int.h"

#include <math.h>
#include <string.h>
#include <time.h>

char *vpp__ctl_fmt_num(char *buf, size_t len, double v, int decimals)
{
	if (len == 0)
		return buf;
	if (!isfinite(v)) {
		snprintf(buf, len, "n/a");
		return buf;
	}
	if (decimals < 0)
		decimals = 0;
	if (decimals > 6)
		decimals = 6;
	char raw[64];
	snprintf(raw, sizeof(raw), "%.*f", decimals, fabs(v));
	/* Rounded to zero ("-0.0"): no sign. */
	bool neg = v < 0 && strspn(raw, "0.") != strlen(raw);
	const char *dot = strchr(raw, '.');
	size_t ilen = dot ? (size_t)(dot - raw) : strlen(raw);
	char out[96];
	size_t o = 0;
	if (neg)
		out[o++] = '-';
	for (size_t i = 0; i < ilen; i++) {
		if (i > 0 && (ilen - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = raw[i];
	}
	if (dot) {
		size_t rest = strlen(dot);
		memcpy(out + o, dot, rest);
		o += rest;
	}
	out[o] = 0;
	snprintf(buf, len, "%s", out);
	return buf;
}

char *vpp__ctl_fmt_estimate(char *buf, size_t len, double value, double sigma, double lower,
                            double upper, const char *unit)
{
	char v[48], s[48], lo[48], hi[48];
	vpp__ctl_fmt_num(v, sizeof(v), value, 1);
	vpp__ctl_fmt_num(s, sizeof(s), sigma, 1);
	vpp__ctl_fmt_num(lo, sizeof(lo), lower, 1);
	vpp__ctl_fmt_num(hi, sizeof(hi), upper, 1);
	snprintf(buf, len, "%s %s \u00b1%s (90%%: %s\u2013%s)", v, unit, s, lo, hi);
	return buf;
}

char *vpp__ctl_fmt_age(char *buf, size_t len, int64_t age_ms)
{
	if (age_ms < 0)
		age_ms = 0;
	double s = (double)age_ms / 1000.0;
	if (s < 9.95)
		snprintf(buf, len, "%.1f s", s);
	else if (s < 59.5)
		snprintf(buf, len, "%.0f s", s);
	else if (s < 2 * 3600 - 30) /* "90 min" reads better than "2 h" */
		snprintf(buf, len, "%.0f min", s / 60);
	else if (s < 48 * 3600 - 1800)
		snprintf(buf, len, "%.0f h", s / 3600);
	else
		snprintf(buf, len, "%.0f d", s / 86400);
	return buf;
}

char *vpp__ctl_fmt_local_time(char *buf, size_t len, int64_t unix_ms)
{
	time_t t = (time_t)(unix_ms / 1000);
	struct tm tm;
	if (unix_ms <= 0 || !localtime_r(&t, &tm) ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
		snprintf(buf, len, "-");
	return buf;
}

size_t vpp__ctl_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void vpp__ctl_pad(FILE *out, const char *s, size_t width, bool right)
{
	size_t w = vpp__ctl_width(s);
	if (right)
		for (; w < width; w++)
			fputc(' ', out);
	fputs(s, out);
	if (!right)
		for (; w < width; w++)
			fputc(' ', out);
}

void vpp__ctl_table(FILE *out, const char *indent, size_t ncols, const char *const *headers,
                    const bool *right, const char *const *cells, size_t nrows)
{
	size_t width[VPP__CTL_TABLE_MAX_COLS];
	if (ncols > VPP__CTL_TABLE_MAX_COLS)
		return;
	for (size_t k = 0; k < ncols; k++) {
		width[k] = vpp__ctl_width(headers[k]);
		for (size_t r = 0; r < nrows; r++) {
			size_t w = vpp__ctl_width(cells[r * ncols + k]);
			if (w > width[k])
				width[k] = w;
		}
	}
	for (size_t r = 0; r <= nrows; r++) {
		const char *const *line = r == 0 ? headers : cells + (r - 1) * ncols;
		fputs(indent, out);
		for (size_t k = 0; k < ncols; k++) {
			bool last = k + 1 == ncols;
			vpp__ctl_pad(out, line[k], last && !right[k] ? 0 : width[k], right[k]);
			fputs(last ? "\n" : "  ", out);
		}
	}
}
