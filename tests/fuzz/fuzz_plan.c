/* libFuzzer target for vpp-plan's fleet CSV (tools/plan/fleet.c): the
 * input is the file, read as `vpp-plan --fleet FILE` reads it; an accepted
 * fleet then goes through the limits and the allocator as vpp-plan sends
 * it (target: the sum of the fleet's discharge ratings, halved). A refusal
 * names the line; an accepted fleet holds only values the usage text
 * allows, and the allocation stays within each device's limits. */
#include "../../tools/plan/plan_int.h"
#include "vpp/allocate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void plan(vpp__plan_fleet *fl)
{
	double target = 0;
	for (size_t i = 0; i < fl->n; i++) {
		vpp_device_limits lim;
		if (vpp_device_limits_compute(&fl->rt[i], fl->soc[i], fl->power[i], 1, 0.001,
		                              &lim) != 0)
			return; /* vpp-plan says "limits could not be computed" */
		if (fl->a[i] > 0) {
			fl->lo[i] = lim.lo_kw;
			fl->hi[i] = lim.hi_kw;
		} else {
			fl->lo[i] = fl->hi[i] = 0;
		}
		fl->edis[i] = lim.e_dis_kwh;
		fl->echg[i] = lim.e_chg_kwh;
		target += fl->rt[i].rated_discharge_kw / 2;
	}
	vpp_allocator *al;
	if (vpp_allocator_new(&al) != 0)
		return;
	vpp_alloc_input in = {.n = fl->n,
	                      .a = fl->a,
	                      .e_dis = fl->edis,
	                      .e_chg = fl->echg,
	                      .lo = fl->lo,
	                      .hi = fl->hi};
	vpp_alloc_result res;
	if (vpp_allocate(al, &in, target, fl->p, &res) == 0) {
		for (size_t i = 0; i < fl->n; i++) {
			double slack = 1e-6 * (1 + fabs(fl->lo[i]) + fabs(fl->hi[i]));
			if (!isfinite(fl->p[i]) || fl->p[i] < fl->lo[i] - slack ||
			    fl->p[i] > fl->hi[i] + slack)
				abort();
		}
	}
	vpp_allocator_free(al);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 16))
		return 0;
	FILE *in = fmemopen((void *)data, size ? size : 1, "r");
	if (!in)
		return 0;
	if (size == 0) {
		fclose(in);
		return 0;
	}
	vpp__plan_fleet fl;
	memset(&fl, 0, sizeof(fl));
	char err[4096] = "";
	int rv = vpp__plan_read_fleet(in, "fleet.csv", &fl, err, sizeof(err));
	fclose(in);
	if (rv != 0) {
		if (strncmp(err, "fleet.csv", 9) != 0 && strcmp(err, "out of memory") != 0)
			abort();
	} else {
		for (size_t i = 0; i < fl.n; i++) {
			const vpp_device_ratings *r = &fl.rt[i];
			if (!fl.id[i][0] || strchr(fl.id[i], ',') || r->rated_charge_kw < 0 ||
			    r->rated_discharge_kw < 0 || r->capacity_kwh < 0 || fl.soc[i] < 0 ||
			    fl.soc[i] > 1 || r->min_soc < 0 || r->min_soc > r->max_soc ||
			    r->max_soc > 1 || r->ramp_kw_per_s < 0 || fl.a[i] < 0 || fl.a[i] > 1 ||
			    !isfinite(fl.power[i]))
				abort();
		}
		if (fl.n <= 512)
			plan(&fl);
	}
	vpp__plan_fleet_free(&fl);
	return 0;
}
