/* The dispatch core (DESIGN.md §5-6): the fleet table, the estimator, the
 * controller and the allocator behind one tick.
 *
 * A vpp_fleet holds one slot per known device (struct-of-arrays) with its
 * ratings, latest telemetry, the estimate derived from it, its reliability
 * and the setpoint last sent. The owner (vppd's dispatch thread, vpp-plan,
 * the tests) feeds it Hellos, telemetry, acks and operator targets, and calls
 * vpp_fleet_tick() once per control tick; the tick returns the setpoints to
 * send now and the fleet status.
 *
 * Not thread-safe: one thread owns a fleet. Times are Unix ms passed in by
 * the caller; the library never reads a clock, so runs are deterministic.
 * Power in kW (positive = discharge), energy in kWh, SoC a fraction 0..1. */
#ifndef VPP_DISPATCH_H
#define VPP_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "vpp/allocate.h"

/* Longest device id accepted (the device certificate's CN). */
#define VPP_DEVICE_ID_MAX 128

/* An estimated quantity: expected value, standard deviation, the 90%
 * interval [lower, upper] and the time of its newest input. */
typedef struct vpp_estimate {
	double value;
	double sigma;
	double lower;
	double upper;
	int64_t as_of_ms;
} vpp_estimate;

/* Tunables. vpp_dispatch_params_default() fills the documented defaults;
 * vpp_fleet_new() rejects out-of-range values. */
typedef struct vpp_dispatch_params {
	int64_t tick_ms;           /* 1000: control period = allocation horizon */
	int64_t stale_after_ms;    /* 3000: no telemetry for this long -> stale,
				    * availability starts to decay */
	int64_t stale_decay_ms;    /* 5000: time constant of that decay */
	int64_t stale_limit_ms;    /* 15000: beyond this a device is not
				    * dispatched (p = 0) nor counted */
	double deadband_kw;        /* 0.05: re-command only if the setpoint moved
				    * by more than max(deadband_kw,
				    * deadband_frac x rating) ... */
	double deadband_frac;      /* 0.01 */
	int64_t lease_ms;          /* 10000: valid_until = now + lease_ms */
	int64_t renew_before_ms;   /* 3000: ... or its lease ends within this (>= 2 ticks) */
	int64_t ack_timeout_ms;    /* 2000: an unacked setpoint counts as missed */
	double kp;                 /* 0.3: PI proportional gain (kW per kW) */
	double ki_per_s;           /* 0.4: PI integral gain (kW per kW.s) */
	double max_correction_frac; /* 0.25: |PI correction| <= this x |target| */
	int64_t settle_ms;         /* 2000: the PI acts only once the target has
				    * been steady this long (response lag would
				    * otherwise wind it up) */
	double settle_tol_frac;    /* 0: a target change within this fraction
				    * of the target does not restart the settle
				    * wait (a cluster share moves a little
				    * every tick) */
	double cusum_k;            /* 0.5: CUSUM allowance, in sigmas */
	double cusum_h;            /* 8: CUSUM threshold, in sigmas */
	int recover_samples;       /* 10: consecutive tracking samples within 1
				    * sigma that clear the degraded flag */
	double track_tol_frac;     /* 0.05: tracking tolerance, fraction of the
				    * setpoint, added to the residual's sigma */
	double track_tol_kw;       /* 0.05: absolute tracking tolerance */
	double response_tau_ms;    /* 1000: assumed response time constant; a
				    * residual in the direction of the previous
				    * setpoint is forgiven by |change| x
				    * exp(-age / tau) */
	double track_min_frac;     /* 0.05: the delivered/commanded ratio is
				    * learnt only from setpoints above this
				    * fraction of the rating */
	double track_alpha;        /* 0.3: EWMA weight of the ratio */
	double ack_alpha;          /* 0.2: EWMA weight of an on-time ack */
	double ack_miss_factor;    /* 0.5: ack score multiplier on a miss */
	double min_reliability;    /* 0.02: reliability floor (a device is never
				    * written off entirely) */
	double default_power_sigma_kw; /* 0.1: when a sample has no sigma */
	double default_soc_sigma;  /* 0.02 */
	double power_sigma_growth; /* 0.02: random walk of power between
				    * samples, x rating per sqrt(s) */
	double soc_sigma_growth_per_h; /* 0.01: drift of SoC between samples */
	double energy_eps_kwh;     /* 0.001: floor of e_i */
	uint64_t seq_base;         /* 0: each device's setpoint seqs start at
				    * seq_base + 1 (vppd passes its start time
				    * in us, so seqs keep rising across restarts
				    * and a late ack of the last process's seq
				    * is not taken for one never sent) */
} vpp_dispatch_params;

void vpp_dispatch_params_default(vpp_dispatch_params *p);
/* Staleness counted in telemetry intervals: the defaults (3, 5 and 15 s)
 * are for devices reporting every second; a longer |interval_ms| scales
 * them (3, 5 and 15 intervals), so a device between two reports is not
 * taken for a silent one. */
void vpp_dispatch_params_for_interval(vpp_dispatch_params *p, int64_t interval_ms);

/* Checks every field; returns 0 or VPP_EINVAL. */
int vpp_dispatch_params_check(const vpp_dispatch_params *p);

typedef struct vpp_fleet vpp_fleet;

/* Creates an empty fleet with a copy of |params| (NULL: defaults). Returns
 * 0, VPP_EINVAL (bad params) or VPP_ENOMEM. */
int vpp_fleet_new(const vpp_dispatch_params *params, vpp_fleet **ret);
void vpp_fleet_free(vpp_fleet *f);

/* ---- registry ---------------------------------------------------------- */

/* Adds device |id| (1..VPP_DEVICE_ID_MAX bytes) with |ratings|, disconnected,
 * and sets |*slot| to its handle, stable until vpp_fleet_remove(). O(1)
 * amortised. Returns 0, VPP_EINVAL (bad id or ratings), VPP_EEXIST (use
 * vpp_fleet_lookup) or VPP_ENOMEM. */
int vpp_fleet_add(vpp_fleet *f, const char *id, const vpp_device_ratings *ratings,
		  uint32_t *slot);

/* Finds |id|; returns 0 and sets |*slot|, or VPP_ENOENT. O(1). */
int vpp_fleet_lookup(const vpp_fleet *f, const char *id, uint32_t *slot);

/* Replaces the ratings (a new Hello). VPP_EINVAL, VPP_ENOENT (bad slot). */
int vpp_fleet_set_ratings(vpp_fleet *f, uint32_t slot, const vpp_device_ratings *ratings);

/* A session for the device started / ended. Connecting forgets the
 * setpoint in effect (the new session has none) but keeps the history
 * (reliability, CUSUM). A disconnected device has availability 0 and gets
 * no setpoints. VPP_ENOENT on a bad slot. */
int vpp_fleet_connect(vpp_fleet *f, uint32_t slot, int64_t now_ms);
int vpp_fleet_disconnect(vpp_fleet *f, uint32_t slot, int64_t now_ms);

/* A device about to be sent to another node (a drain): while |leaving| it
 * gets no share (commanded to 0, the others take it over), so that it
 * leaves at 0 and no two nodes count its power (|leaving| 0 or 1). Cleared
 * by a new session.
 * VPP_ENOENT on a bad slot. */
int vpp_fleet_set_leaving(vpp_fleet *f, uint32_t slot, int leaving);

/* Forgets the device; its slot may be reused. VPP_ENOENT on a bad slot. */
int vpp_fleet_remove(vpp_fleet *f, uint32_t slot);

/* Number of devices in the table. */
size_t vpp_fleet_size(const vpp_fleet *f);

/* The id of |slot| (owned by the fleet, valid until the slot is removed),
 * or NULL for a bad slot. */
const char *vpp_fleet_id(const vpp_fleet *f, uint32_t slot);

/* Slot-order iteration: sets |*slot| to the first used slot >= |from| and
 * returns 0, or VPP_ENOENT when there is none.
 *   for (rv = vpp_fleet_next(f, 0, &s); rv == 0; rv = vpp_fleet_next(f, s + 1, &s)) */
int vpp_fleet_next(const vpp_fleet *f, uint32_t from, uint32_t *slot);

/* Id-order paging: writes to |slots| (room for |max|) the devices whose id
 * sorts (strcmp) after |after_id| (NULL or "" = from the start), in id
 * order, and sets |*n|. O(size x log max). Returns 0 or VPP_ENOMEM. */
int vpp_fleet_page(const vpp_fleet *f, const char *after_id, uint32_t *slots, size_t max,
		   size_t *n);

/* ---- inputs -------------------------------------------------------------- */

#define VPP_TELEMETRY_NO_POWER_SIGMA 0x1u /* power_sigma_kw is not given */
#define VPP_TELEMETRY_NO_SOC_SIGMA 0x2u   /* soc_sigma is not given */
#define VPP_TELEMETRY_BAD_POWER 0x4u      /* the power reading is unusable */
#define VPP_TELEMETRY_BAD_SOC 0x8u        /* the SoC reading is unusable */

typedef struct vpp_telemetry {
	uint64_t seq;
	int64_t measured_at_ms;  /* device clock */
	int64_t received_at_ms;  /* server clock */
	int64_t clock_offset_ms; /* server - device, from the session */
	double power_kw;
	double power_sigma_kw;   /* <= 0 or flag: the configured default */
	double soc;
	double soc_sigma;
	uint32_t quality;        /* VPP_TELEMETRY_* flags */
} vpp_telemetry;

/* Feeds one sample. Its time is measured_at + clock_offset, clamped to
 * received_at (a sample cannot come from the future). Updates the SoC and
 * power estimates, the tracking ratio and the CUSUM; a change point queues a
 * VPP_EVENT_DEGRADED (or, after recovery, VPP_EVENT_RECOVERED) returned by
 * the next tick. Returns 0; VPP_ENOENT (bad slot); VPP_EINVAL (non-finite
 * numbers, SoC outside 0..1 unless flagged bad); VPP_EEXIST when |seq| is
 * not newer than the last sample (duplicate or reordered: ignored). */
int vpp_fleet_telemetry(vpp_fleet *f, uint32_t slot, const vpp_telemetry *t);

/* The caller wrote setpoint |seq| (from a tick's commands, or its own) to
 * the device. Until this is called a tick's command is not in effect, so a
 * command the transport had to drop is proposed again on the next tick.
 * VPP_ENOENT on a bad slot, VPP_EINVAL on non-finite power. */
int vpp_fleet_command_sent(vpp_fleet *f, uint32_t slot, uint64_t seq, double power_kw,
			   int64_t valid_until_ms, int64_t now_ms);

/* The device acked setpoint |seq|. An ack on time raises the ack score; a
 * rejection or a late ack counts as a miss. Acks of other seqs are ignored
 * (returns 0). VPP_ENOENT on a bad slot. */
int vpp_fleet_ack(vpp_fleet *f, uint32_t slot, uint64_t seq, int accepted, int64_t now_ms);

/* In a cluster, where the target is this node's share, renewed every tick
 * with a validity of a few ticks: the end of the operator's setpoint it
 * comes from (0: none in force) caps the batteries' leases instead of the
 * share's validity, so that they are not re-sent every tick to renew a
 * lease the next share extends anyway. The node still goes to 0 itself
 * when its share runs out. VPP_EINVAL when negative. */
int vpp_fleet_set_lease_end(vpp_fleet *f, int64_t end_ms);

/* The effective target as of the last tick: where a new target's ramp
 * starts from. */
double vpp_fleet_target_eff(const vpp_fleet *f);

/* Sets the fleet target (this node's share) until |valid_until_ms|; after
 * that the target returns to 0. The effective target moves towards it at
 * |ramp_kw_per_s| (0: at once). Returns 0 or VPP_EINVAL (non-finite, negative
 * ramp). */
int vpp_fleet_set_target(vpp_fleet *f, double target_kw, int64_t valid_until_ms,
			 double ramp_kw_per_s, int64_t now_ms);

/* ---- tick ---------------------------------------------------------------- */

typedef enum vpp_device_state {
	VPP_DEVICE_ONLINE = 0,  /* connected, telemetry fresh */
	VPP_DEVICE_STALE = 1,   /* connected, no usable power reading for
				 * stale_after (or none yet): telemetry that
				 * only reports a sensor fault counts as none */
	VPP_DEVICE_OFFLINE = 2, /* not connected */
} vpp_device_state;

typedef struct vpp_command {
	uint32_t slot;
	uint64_t seq;
	double power_kw;
	int64_t valid_until_ms;
} vpp_command;

typedef enum vpp_event_type {
	VPP_EVENT_DEGRADED = 1,  /* CUSUM change point: under/over-delivers */
	VPP_EVENT_RECOVERED = 2, /* tracks again */
	VPP_EVENT_ACK_MISSED = 3, /* a setpoint was not acked in time */
} vpp_event_type;

typedef struct vpp_device_event {
	vpp_event_type type;
	uint32_t slot;
	char id[VPP_DEVICE_ID_MAX + 1]; /* copied: the slot may be gone */
	int64_t at_ms;
	double value; /* DEGRADED/RECOVERED: the tracking ratio; ACK_MISSED: seq */
} vpp_device_event;

typedef struct vpp_fleet_status {
	int64_t now_ms;
	double target_kw;      /* requested (this node's share), 0 once expired */
	double target_eff_kw;  /* after the target ramp */
	double adjusted_kw;    /* P_adj = effective target + PI correction */
	double correction_kw;  /* the PI correction */
	double commanded_kw;   /* sum of the allocated setpoints */
	double tracking_error_kw; /* previous effective target - measured power */
	double shortfall_kw;   /* effective target - what the fleet can give (its
				* limits less the learnt bias): > 0 short of a
				* discharge, < 0 of a charge */
	vpp_estimate measured_kw;   /* fleet power now, from telemetry */
	vpp_estimate discharge_headroom_kw; /* most it could deliver this tick */
	vpp_estimate charge_headroom_kw;    /* most it could absorb (<= 0) */
	vpp_estimate stored_energy_kwh;     /* usable energy above min SoC */
	vpp_estimate expected_kw;   /* expected delivery of this allocation */
	uint32_t n_devices;
	uint32_t n_online;
	uint32_t n_stale;
	uint32_t n_offline;
	uint32_t n_degraded;   /* connected devices flagged degraded */
	uint32_t n_dispatched; /* devices given a share (availability > 0) */
	uint32_t n_saturated;
	uint32_t n_commands;
	int feasible;
} vpp_fleet_status;

/* What one tick produced. The arrays are owned by the fleet and valid until
 * the next vpp_fleet_tick() or vpp_fleet_free(). */
typedef struct vpp_tick_output {
	vpp_fleet_status status;
	const vpp_command *commands; /* send these now, then report each with
				      * vpp_fleet_command_sent() */
	size_t n_commands;
	const vpp_device_event *events; /* since the previous tick */
	size_t n_events;
} vpp_tick_output;

/* Runs one control tick at |now_ms|: expires the target, counts missed acks,
 * ages every estimate, updates the PI correction from the measured tracking
 * error, allocates P_adj over the fleet and picks the commands to send
 * (setpoint moved beyond the deadband, lease about to end, or none in
 * effect). Returns 0 and fills |*out|; VPP_ENOMEM. */
int vpp_fleet_tick(vpp_fleet *f, int64_t now_ms, vpp_tick_output *out);

typedef struct vpp_preview {
	vpp_estimate expected_kw;
	double shortfall_kw;
	uint32_t n_saturated;
	uint32_t n_dispatched;
	double min_kw, max_kw; /* feasible range of expected delivery */
	/* How long the expected delivery lasts before the batteries reach
	 * their SoC limit, at most (efficiency losses shorten it), s;
	 * INFINITY for 0 kW. */
	double sustain_s;
} vpp_preview;

/* What the fleet would deliver for |target_kw| at |now_ms| (no PI
 * correction), without changing any state. Returns 0 or VPP_ENOMEM,
 * VPP_EINVAL (non-finite target). */
int vpp_fleet_preview(vpp_fleet *f, double target_kw, int64_t now_ms, vpp_preview *out);

/* ---- read-out ------------------------------------------------------------ */

typedef struct vpp_device_info {
	const char *id; /* owned by the fleet */
	vpp_device_ratings ratings;
	vpp_device_state state;
	int connected;
	int degraded;
	vpp_estimate soc;      /* aged to |now_ms| */
	vpp_estimate power_kw; /* aged to |now_ms| */
	int64_t last_seen_ms;  /* server time of the last sample, 0 if none */
	double availability;
	double reliability;
	double ack_score;
	double track_ratio;    /* learnt delivered / commanded */
	double setpoint_kw;    /* in effect (last sent), 0 if none */
	uint64_t setpoint_seq;
	int64_t setpoint_valid_until_ms;
	int setpoint_acked;
	double cusum_pos, cusum_neg;
} vpp_device_info;

/* Fills |*out| for |slot| with estimates aged to |now_ms|. VPP_ENOENT. */
int vpp_fleet_device_info(const vpp_fleet *f, uint32_t slot, int64_t now_ms,
			  vpp_device_info *out);

/* The fleet as one aggregate device (for splitting a cluster target across
 * nodes with the same allocator): a, e_dis, e_chg, lo, hi such that the node
 * can be treated as one device. Computed by the last tick. */
int vpp_fleet_aggregate(const vpp_fleet *f, double *a, double *e_dis_kwh, double *e_chg_kwh,
			double *lo_kw, double *hi_kw);

#endif
