/* The pure part of vpp-emulator: deterministic random numbers, one
 * battery's physics and the assignment of faults to the fleet. No I/O, no
 * libuv: tests/unit/test_emulator.c links only these files. */
#ifndef VPP_EMUL_PHYSICS_H
#define VPP_EMUL_PHYSICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- rng.c: xoshiro256** seeded through splitmix64 ---------------------- */

typedef struct {
	uint64_t s[4];
} vpp__emul_rng;

/* Seeds |r| from |seed| and |stream| (e.g. a device index), so that every
 * device has its own reproducible sequence. */
void vpp__emul_rng_seed(vpp__emul_rng *r, uint64_t seed, uint64_t stream);
uint64_t vpp__emul_rng_next(vpp__emul_rng *r);
/* Uniform in [0, 1). */
double vpp__emul_rng_uniform(vpp__emul_rng *r);
/* Uniform in [lo, hi). */
double vpp__emul_rng_range(vpp__emul_rng *r, double lo, double hi);
/* Standard normal N(0, 1). */
double vpp__emul_rng_normal(vpp__emul_rng *r);

/* ---- physics.c: one battery ---------------------------------------------- */

typedef struct {
	double rated_charge_kw;    /* > 0 */
	double rated_discharge_kw; /* > 0 */
	double capacity_kwh;       /* > 0 */
	double min_soc, max_soc;   /* 0 <= min < max <= 1 */
	double ramp_kw_per_s;      /* > 0 */
	double charge_eff;         /* (0, 1]: fraction of the grid energy stored */
	double discharge_eff;      /* (0, 1]: fraction of the cell energy delivered */
	double tau_s;              /* first-order response lag; 0: none */
	double delay_s;            /* dead time before a setpoint takes effect */
	double noise_kw;           /* measurement noise sigma of power */
	double soc_sigma;          /* measurement noise sigma of SoC */
	double partial_factor;     /* the partial fault: delivers this × the setpoint (1: none) */
	bool ignore;               /* the ignore fault: acks setpoints, holds 0 */
} vpp__emul_params;

/* A setpoint heard but still inside the delay. */
typedef struct {
	double kw, until_s, at_s; /* command, its lease end, when it takes effect */
} vpp__emul_pending;

/* Setpoints the delay line holds at once. A battery with a delay longer
 * than the server's tick hears several before the first takes effect; past
 * this many within one delay, a new one replaces the newest waiting. */
#define VPP__EMUL_MAX_PENDING 8

/* The true state. Times are seconds on one monotonic "true" time line
 * chosen by the caller (the emulator uses seconds since its start). */
typedef struct {
	vpp__emul_params p;
	double now_s;       /* the time the state is at */
	double soc;         /* true state of charge */
	double power_kw;    /* true delivered power; + = discharge */
	double cmd_kw;      /* setpoint in effect (after the delay) */
	double cmd_until_s; /* its lease end; the command is 0 after it */
	/* The delay line, oldest first: each setpoint takes effect delay_s
	 * after it was heard, in the order heard. */
	vpp__emul_pending pending[VPP__EMUL_MAX_PENDING];
	unsigned npending;
	double delivered_kwh; /* energy delivered to the grid (discharge +) */
} vpp__emul_battery;

/* Longest integration step; longer advances are split. */
#define VPP__EMUL_MAX_STEP_S 0.05

void vpp__emul_battery_init(vpp__emul_battery *b, const vpp__emul_params *p, double soc,
                            double now_s);

/* A setpoint of |kw| heard at |now_s| whose lease ends at |until_s|. It takes
 * effect p.delay_s later, after the setpoints heard before it (a delay line:
 * a battery whose delay is longer than the server's tick still follows every
 * setpoint, each one delay late). The battery is first advanced to |now_s|. */
void vpp__emul_battery_command(vpp__emul_battery *b, double kw, double until_s, double now_s);

/* Integrates the state up to |now_s| (no-op when |now_s| is not later). */
void vpp__emul_battery_advance(vpp__emul_battery *b, double now_s);

/* The power the battery currently steers towards: the command while its
 * lease runs (0 after), with the ignore/partial faults, power ratings and
 * SoC limits applied. */
double vpp__emul_battery_target(const vpp__emul_battery *b);

/* The setpoint in effect (0 once its lease ended), as commanded. */
double vpp__emul_battery_commanded(const vpp__emul_battery *b);

/* What the battery's meter reports: true values plus N(0, sigma) noise;
 * the reported SoC stays within [0, 1]. */
void vpp__emul_battery_measure(const vpp__emul_battery *b, vpp__emul_rng *r, double *power_kw,
                               double *soc);

/* ---- faults.c ------------------------------------------------------------ */

typedef enum {
	VPP__EMUL_F_NONE = 0,
	VPP__EMUL_F_OFFLINE,   /* never connects */
	VPP__EMUL_F_FLAKY,     /* drops its connection now and then, reconnects */
	VPP__EMUL_F_IGNORE,    /* acks setpoints but holds 0 */
	VPP__EMUL_F_PARTIAL,   /* delivers partial_factor × the setpoint */
	VPP__EMUL_F_LATE_ACK,  /* acks late */
	VPP__EMUL_F_MALFORMED, /* now and then sends a malformed message */
	VPP__EMUL_F__COUNT
} vpp__emul_fault;

/* "none", "offline", "flaky", ... */
const char *vpp__emul_fault_name(int fault);

/* Gives each of |n| devices one fault kind: exactly round(|frac|[k] × n)
 * devices get kind k (k >= 1; frac[0] is ignored), chosen by a shuffle seeded
 * with |seed|; the others get VPP__EMUL_F_NONE. Kinds do not overlap, so
 * the fractions must sum to at most 1. Writes |out|[0..n). Returns 0 or
 * VPP_EINVAL (a fraction outside [0, 1] or a sum over 1). */
int vpp__emul_faults_assign(const double frac[VPP__EMUL_F__COUNT], size_t n, uint64_t seed,
                            uint8_t *out);

#endif
