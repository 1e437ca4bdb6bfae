/* The dispatch allocator (DESIGN.md §6): split one fleet power target into
 * per-device setpoints.
 *
 * For devices i = 0..n-1 with expected delivery fraction a_i (availability x
 * reliability), available energy e_i and a feasible range [lo_i, hi_i], it
 * solves exactly
 *
 *     minimise   sum p_i^2 / (a_i * e_i)
 *     subject to sum a_i * p_i = target,   lo_i <= p_i <= hi_i
 *
 * where e_i is the energy above min SoC when p_i > 0 (discharge) and the room
 * below max SoC when p_i < 0 (charge). The solution is
 * p_i = clamp(mu * a_i^2 * e_i, lo_i, hi_i) with mu found by a breakpoint
 * (median) search in expected O(n): no fixed number of bisection steps, so the
 * target is met to rounding. Devices with a_i <= 0 get p_i = 0 and are not
 * counted. If the target is outside [sum a_i lo_i, sum a_i hi_i] every device
 * sits at the limit on the target's side and the shortfall is reported.
 *
 * Pure: no I/O, no clock, no globals. Power in kW (positive = discharge),
 * energy in kWh, SoC as a fraction 0..1. */
#ifndef VPP_ALLOCATE_H
#define VPP_ALLOCATE_H

#include <stddef.h>
#include <stdint.h>

/* Static ratings of a device, as announced in its Hello. */
typedef struct vpp_device_ratings {
	double rated_charge_kw;    /* >= 0: largest charge power (magnitude) */
	double rated_discharge_kw; /* >= 0: largest discharge power */
	double capacity_kwh;       /* >= 0 */
	double min_soc;            /* 0 <= min_soc <= max_soc <= 1 */
	double max_soc;
	double ramp_kw_per_s;      /* > 0; 0 means no ramp limit */
} vpp_device_ratings;

/* Checks |r| against the ranges documented above (finite numbers too).
 * Returns 0 or VPP_EINVAL. */
int vpp_device_ratings_check(const vpp_device_ratings *r);

/* What one device can do over the next |horizon_s| seconds. */
typedef struct vpp_device_limits {
	double lo_kw;     /* lowest feasible setpoint (most charge) */
	double hi_kw;     /* highest feasible setpoint (most discharge) */
	double e_dis_kwh; /* energy above min SoC, floored at the epsilon */
	double e_chg_kwh; /* room below max SoC, floored at the epsilon */
} vpp_device_limits;

/* Computes the limits of a device with ratings |r| at state of charge |soc|
 * currently running at |power_kw|: the power ratings, the energy it can give
 * or take before its SoC limits within |horizon_s|, and its ramp limit from
 * |power_kw|. Ratings and SoC limits are hard; when the ramp window lies
 * entirely outside them (a device far above a limit it must return to) the
 * range collapses to the hard limit nearest to the window. |soc| is clamped
 * to 0..1. Energies are floored at |eps_kwh| (> 0) so that an empty battery
 * still has a positive weight. Returns 0, or VPP_EINVAL on non-finite input,
 * |horizon_s| <= 0 or |eps_kwh| <= 0 (|*out| untouched). */
int vpp_device_limits_compute(const vpp_device_ratings *r, double soc, double power_kw,
			      double horizon_s, double eps_kwh, vpp_device_limits *out);

/* One allocation problem in struct-of-arrays form; every array has |n|
 * entries. The allocator only reads them. */
typedef struct vpp_alloc_input {
	size_t n;
	const double *a;     /* expected delivery fraction, <= 0 excludes */
	const double *e_dis; /* kWh, > 0 for included devices */
	const double *e_chg; /* kWh, > 0 for included devices */
	const double *lo;    /* kW, lo <= hi for included devices */
	const double *hi;
} vpp_alloc_input;

typedef struct vpp_alloc_result {
	double target_kw;   /* what was asked for */
	double expected_kw; /* sum a_i p_i */
	double shortfall_kw; /* target - expected: > 0 the fleet cannot discharge
			      * enough, < 0 it cannot absorb enough, 0 when feasible */
	double min_kw;      /* sum a_i lo_i: the least the fleet can deliver */
	double max_kw;      /* sum a_i hi_i: the most */
	double mu;          /* the multiplier: p_i = clamp(mu a_i^2 e_i, lo_i, hi_i) */
	uint32_t n_included; /* devices with a_i > 0 */
	uint32_t n_saturated; /* included devices at the limit on the target's
			       * side (hi when the target is above the zero-power
			       * delivery, lo when below) */
	int feasible;       /* 1 when target is within [min_kw, max_kw] */
} vpp_alloc_result;

/* Holds the scratch memory of the breakpoint search so that a tick does not
 * allocate once it has seen its largest fleet. Not thread-safe: one per
 * thread. */
typedef struct vpp_allocator vpp_allocator;

int vpp_allocator_new(vpp_allocator **ret);
void vpp_allocator_free(vpp_allocator *al);

/* Solves the problem |in| for |target_kw| and writes the n setpoints to |p|
 * (kW) and the summary to |res| (may be NULL). Returns 0; VPP_EINVAL when
 * |target_kw| or an included device's numbers are not finite, when lo > hi or
 * an energy is <= 0 (|p| and |res| are then unspecified / untouched);
 * VPP_ENOMEM. An empty problem (n = 0 or no included device) is feasible only
 * for a target of 0; otherwise the whole target is the shortfall. */
int vpp_allocate(vpp_allocator *al, const vpp_alloc_input *in, double target_kw, double *p,
		 vpp_alloc_result *res);

#endif
