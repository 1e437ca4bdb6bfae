/* Estimates: sums of independent terms and their 90% intervals. */
#include <math.h>

#include "dispatch_int.h"

void vpp__acc_add(vpp__acc *acc, double mean, double var, int64_t as_of)
{
	acc->mean += mean;
	acc->var += var;
	if (as_of > acc->as_of)
		acc->as_of = as_of;
}

void vpp__estimate_single(double mean, double sigma, int64_t as_of, vpp_estimate *out)
{
	out->value = mean;
	out->sigma = sigma;
	out->lower = mean - VPP__Z90 * sigma;
	out->upper = mean + VPP__Z90 * sigma;
	out->as_of_ms = as_of;
}

/* A sum of many independent terms is close to normal, so mean +- 1.645
 * sigma is its 90% interval. */
void vpp__acc_estimate(const vpp__acc *acc, vpp_estimate *out)
{
	vpp__estimate_single(acc->mean, sqrt(acc->var > 0 ? acc->var : 0), acc->as_of, out);
}
