/* Internals of the dispatch core shared by fleet.c, estimate.c, control.c
 * and stats.c. The fleet is a struct-of-arrays: one index per slot. */
#ifndef VPP_DISPATCH_INT_H
#define VPP_DISPATCH_INT_H

#include <stdint.h>

#include "vpp/dispatch.h"

#define VPP__Z90 1.6448536269514722 /* two-sided 90% normal quantile */

/* Per-slot flags. */
enum {
	F_USED = 1u << 0,
	F_CONNECTED = 1u << 1,
	F_HAS_SAMPLE = 1u << 2,
	F_DEGRADED = 1u << 3,
	F_HAS_CMD = 1u << 4,  /* a setpoint is in effect */
	F_PENDING = 1u << 5,  /* ... and not acked yet */
	F_ACKED = 1u << 6,    /* ... and acked */
	F_LEAVING = 1u << 7,  /* being moved to another node: commanded to 0 */
};

/* The per-device estimate derived at a given time. */
typedef struct vpp__derived {
	double avail;   /* 0..1 */
	double a;       /* avail x delivery fraction, 0 when not dispatchable */
	double w_ack;   /* the ack score as a share weight (> 0) */
	double soc, soc_sigma;
	double p, p_sigma;
	double shift; /* part of p predicted from a setpoint newer than the sample */
	vpp_device_state state;
} vpp__derived;

struct vpp_fleet {
	vpp_dispatch_params prm;
	uint32_t cap;  /* slots allocated */
	uint32_t hwm;  /* slots ever used: [0, hwm) */
	uint32_t count;

	/* registry */
	char **id;
	uint32_t *flags;
	uint32_t *free_slots; /* stack */
	uint32_t n_free;
	uint32_t *hash;       /* open addressing: slot + 1, 0 empty, TOMB */
	uint32_t hash_cap;    /* power of two */
	uint32_t hash_used;   /* live + tombstones */

	/* ratings */
	vpp_device_ratings *rt;

	/* latest telemetry (server time) */
	uint64_t *t_seq;
	int64_t *t_at;      /* corrected measured_at */
	int64_t *t_recv;
	int64_t *t_precv;   /* t_recv of the last usable power reading */
	int64_t *t_conn;    /* when the session started */
	double *t_p, *t_psig, *t_soc, *t_socsig;

	/* reliability */
	double *ack_score, *track_ratio;
	double *accept_score; /* refusals push it down, accepted acks back up */
	double *cs_pos, *cs_neg;
	int32_t *good_streak;

	/* setpoint in effect */
	uint64_t *c_seq, *next_seq;
	double *c_p, *c_prev;
	int64_t *c_at, *c_until, *c_prev_at;
	int64_t *gone_until; /* disconnected, but its lease runs until then */

	/* per-tick scratch (index = slot) */
	double *x_a, *x_edis, *x_echg, *x_lo, *x_hi, *x_p, *x_p2;
	vpp_allocator *al;

	/* target and controller */
	double target, target_ramp, target_eff, target_prev_eff;
	int64_t target_until, target_changed_at, last_tick;
	/* Set (lease_end_set) in a cluster: the operator setpoint's end,
	 * which caps the leases instead of target_until (0: none in force). */
	int64_t lease_end;
	int lease_end_set;
	int has_ticked;
	int sat_dir; /* last allocation pinned at max (1) or min (-1) */
	double integ, correction;

	/* outputs */
	vpp_command *cmds;
	size_t n_cmds, cap_cmds;
	vpp_device_event *ev_pending, *ev_out;
	size_t n_ev_pending, cap_ev_pending, n_ev_out, cap_ev_out;

	/* aggregate device of the last tick */
	double agg_a, agg_edis, agg_echg, agg_lo, agg_hi;
};

static inline int vpp__slot_ok(const vpp_fleet *f, uint32_t slot)
{
	return slot < f->hwm && (f->flags[slot] & F_USED);
}

/* estimate.c */
void vpp__derive(const vpp_fleet *f, uint32_t s, int64_t now, vpp__derived *d);
double vpp__reliability(const vpp_fleet *f, uint32_t s);
double vpp__delivery_fraction(const vpp_fleet *f, uint32_t s);
int vpp__event(vpp_fleet *f, vpp_event_type type, uint32_t slot, int64_t at, double value);
double vpp__max_rating(const vpp_device_ratings *r);

/* stats.c: an accumulator of independent terms */
typedef struct vpp__acc {
	double mean, var;
	int64_t as_of;
} vpp__acc;

void vpp__acc_add(vpp__acc *acc, double mean, double var, int64_t as_of);
void vpp__acc_estimate(const vpp__acc *acc, vpp_estimate *out);
void vpp__estimate_single(double mean, double sigma, int64_t as_of, vpp_estimate *out);

#endif
