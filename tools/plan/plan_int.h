/* vpp-plan's fleet CSV reader: pure (a stream in, a fleet or a message
 * out, nothing printed) so that tests/fuzz/fuzz_plan.c calls it directly. */
#ifndef VPP_PLAN_INT_H
#define VPP_PLAN_INT_H

#include "vpp/allocate.h"

#include <stddef.h>
#include <stdio.h>

/* The devices of a fleet file, in input order; the limits and the
 * allocation (lo..p) are filled by vpp-plan after reading. */
typedef struct vpp__plan_fleet {
	size_t n, cap;
	char **id;
	size_t *line;
	vpp_device_ratings *rt;
	double *soc, *power, *a, *lo, *hi, *edis, *echg, *p;
} vpp__plan_fleet;

/* Reads and validates the fleet CSV from |in| (|path| names it in
 * messages) into |fl| (zeroed by the caller). Returns 0, or 1 with
 * "PATH:LINE: reason" (or "PATH: read error", "out of memory") in |err|;
 * |fl| holds what was read so far either way: release it with
 * vpp__plan_fleet_free(). */
int vpp__plan_read_fleet(FILE *in, const char *path, vpp__plan_fleet *fl, char *err, size_t errlen);
/* Parses a finite number that fills all of |s|. Returns 0 or -1. */
int vpp__plan_parse_num(const char *s, double *out);
/* Frees what |fl| holds. */
void vpp__plan_fleet_free(vpp__plan_fleet *fl);

#endif
