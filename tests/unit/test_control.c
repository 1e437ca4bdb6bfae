/* Closed-loop simulation of the dispatch core against a simulated fleet:
 * response lag, measurement and process noise, clock offsets and network
 * delay; 10% of devices ignore setpoints (half of them do not even ack) and
 * 5% silently deliver half. Checks what an operator would see: the fleet
 * reaches a step target within 2% in 10 ticks and stays there, the CUSUM
 * flags the half-delivering devices and almost no healthy one, and the 90%
 * interval of fleet power is honest and narrow. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpp/dispatch.h"
#include "vpp/error.h"

enum { HEALTHY = 0, IGNORE_ACK = 1, IGNORE_SILENT = 2, HALF = 3 };

typedef struct simdev {
	int kind;
	double p;        /* true power */
	double soc;      /* true SoC */
	double own;      /* what an ignoring device does on its own */
	double setpoint; /* what it was told */
	int64_t offset;  /* device clock = server clock - offset */
	uint64_t seq;
	uint32_t slot;
} simdev;

static uint64_t rng_state = 0x853C49E6748FEA9BULL;

static double urand(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return ((double)((rng_state * 2685821657736338717ULL) >> 11) + 0.5) / 9007199254740992.0;
}

static double nrand(void)
{
	return sqrt(-2 * log(urand())) * cos(2 * M_PI * urand());
}

#define N_DEV 1000
#define RATED 5.0
#define TAU_S 0.4       /* response lag of the batteries */
#define MEAS_SIGMA 0.05 /* kW, telemetry noise (and the sigma reported) */
#define PROC_SIGMA 0.03 /* kW per tick, the power's own wander */

typedef struct sim {
	vpp_fleet *f;
	simdev dev[N_DEV];
	int64_t now;
	int degraded_flag[N_DEV];
	int first_flag_tick[N_DEV];
} sim;

static void sim_init(sim *S)
{
	static const vpp_device_ratings rt = {RATED, RATED, 13.5, 0.1, 0.95, 0};

	memset(S, 0, sizeof(*S));
	ck_assert_int_eq(vpp_fleet_new(NULL, &S->f), 0);
	S->now = 1763800000000;
	for (int i = 0; i < N_DEV; i++) {
		simdev *d = &S->dev[i];
		char id[32];

		/* Every 20th device delivers half, every 10th (offset 5)
		 * ignores; the kinds are spread over the id space. */
		d->kind = i % 20 == 7 ? HALF : (i % 10 == 3 ? (i % 20 == 3 ? IGNORE_ACK : IGNORE_SILENT)
							  : HEALTHY);
		d->soc = 0.4 + 0.4 * urand();
		d->own = d->kind == IGNORE_ACK || d->kind == IGNORE_SILENT ? urand() - 0.5 : 0;
		d->p = d->own;
		d->offset = (int64_t)(10000 * (urand() - 0.5));
		d->seq = 1;
		S->first_flag_tick[i] = -1;
		snprintf(id, sizeof(id), "sim-%04d", i);
		ck_assert_int_eq(vpp_fleet_add(S->f, id, &rt, &d->slot), 0);
		ck_assert_int_eq(vpp_fleet_connect(S->f, d->slot, S->now), 0);
	}
}

static double fleet_true_power(const sim *S)
{
	double sum = 0;

	for (int i = 0; i < N_DEV; i++)
		sum += S->dev[i].p;
	return sum;
}

/* Moves every device |dt_s| seconds forward towards what it is doing. */
static void advance(sim *S, double dt_s)
{
	for (int i = 0; i < N_DEV; i++) {
		simdev *d = &S->dev[i];
		double want;

		switch (d->kind) {
		case HALF:
			want = 0.5 * d->setpoint;
			break;
		case IGNORE_ACK:
		case IGNORE_SILENT:
			want = d->own;
			break;
		default:
			want = d->setpoint;
		}
		d->p = want + (d->p - want) * exp(-dt_s / TAU_S);
		d->soc -= d->p * dt_s / 3600.0 / 13.5;
	}
}

/* One control period: tick, deliver the commands, let the devices respond,
 * report telemetry 900 ms in. Fills the tick output and the true fleet
 * power at the tick's instant. */
static void period(sim *S, int tick_no, vpp_tick_output *o, double *truth_at_tick)
{
	*truth_at_tick = fleet_true_power(S);
	ck_assert_int_eq(vpp_fleet_tick(S->f, S->now, o), 0);
	for (size_t i = 0; i < o->n_events; i++) {
		const vpp_device_event *e = &o->events[i];
		int idx = atoi(e->id + 4);

		if (e->type == VPP_EVENT_DEGRADED) {
			S->degraded_flag[idx] = 1;
			if (S->first_flag_tick[idx] < 0)
				S->first_flag_tick[idx] = tick_no;
		} else if (e->type == VPP_EVENT_RECOVERED) {
			S->degraded_flag[idx] = 0;
		}
	}
	for (size_t i = 0; i < o->n_commands; i++) {
		const vpp_command *c = &o->commands[i];
		simdev *d = &S->dev[c->slot];

		ck_assert_int_eq(vpp_fleet_command_sent(S->f, c->slot, c->seq, c->power_kw,
							c->valid_until_ms, S->now),
				 0);
		d->setpoint = c->power_kw;
		if (d->kind != IGNORE_SILENT)
			ck_assert_int_eq(
				vpp_fleet_ack(S->f, c->slot, c->seq, 1, S->now + 20 + (int64_t)(30 * urand())),
				0);
	}
	advance(S, 0.9);
	for (int i = 0; i < N_DEV; i++) {
		simdev *d = &S->dev[i];
		vpp_telemetry t = {0};
		int64_t measured = S->now + 900;

		d->p += PROC_SIGMA * nrand();
		t.seq = ++d->seq;
		t.measured_at_ms = measured - d->offset;
		t.received_at_ms = measured + 10 + (int64_t)(70 * urand());
		t.clock_offset_ms = d->offset;
		t.power_kw = d->p + MEAS_SIGMA * nrand();
		t.power_sigma_kw = MEAS_SIGMA;
		t.soc = d->soc + 0.005 * nrand();
		t.soc_sigma = 0.005;
		ck_assert_int_eq(vpp_fleet_telemetry(S->f, d->slot, &t), 0);
	}
	advance(S, 0.1);
	S->now += 1000;
}

START_TEST(step_response_cusum_calibration)
{
	static sim S;
	const int warmup = 10, step_ticks = 60;
	const double target = 0.4 * N_DEV * RATED; /* 2 MW on a 5 MW fleet */
	vpp_tick_output o;
	int covered = 0, counted = 0, settled_at = -1, n_half = 0, half_flagged = 0,
	    healthy = 0, healthy_flagged = 0, last_half_flag = -1;
	double max_width = 0, max_err_after = 0;

	sim_init(&S);
	for (int k = 0; k < warmup + step_ticks; k++) {
		double truth;

		if (k == warmup)
			ck_assert_int_eq(vpp_fleet_set_target(S.f, target, S.now + 3600000, 0, S.now),
					 0);
		period(&S, k, &o, &truth);
		/* Calibration of the fleet power estimate, once every device
		 * has reported. */
		if (k >= 2) {
			const vpp_estimate *m = &o.status.measured_kw;

			counted++;
			covered += truth >= m->lower && truth <= m->upper;
			if (m->upper - m->lower > max_width)
				max_width = m->upper - m->lower;
		}
		if (k >= warmup) {
			double err = fabs(fleet_true_power(&S) - target) / target;

			if (k - warmup >= 10 && err > max_err_after)
				max_err_after = err;
			if (settled_at < 0 && err <= 0.02)
				settled_at = k - warmup;
		}
	}
	ck_assert_msg(covered * 100 >= 85 * counted, "90%% interval held the truth in %d of %d ticks",
		      covered, counted);
	ck_assert_msg(max_width < 0.1 * N_DEV * RATED, "interval %.1f kW wide", max_width);
	ck_assert_msg(settled_at >= 0 && settled_at <= 10, "settled after %d ticks", settled_at);
	ck_assert_msg(max_err_after <= 0.02, "error %.2f%% after settling", 100 * max_err_after);

	for (int i = 0; i < N_DEV; i++) {
		if (S.dev[i].kind == HALF) {
			n_half++;
			if (S.first_flag_tick[i] >= 0 && S.first_flag_tick[i] <= warmup + 30)
				half_flagged++;
			if (S.first_flag_tick[i] > last_half_flag)
				last_half_flag = S.first_flag_tick[i];
		} else if (S.dev[i].kind == HEALTHY) {
			healthy++;
			if (S.first_flag_tick[i] >= 0)
				healthy_flagged++;
		}
	}
	printf("control: settled in %d ticks, max error after %.2f%%, interval held truth "
	       "%d/%d ticks, max width %.1f kW, half-deliverers flagged %d/%d (last at tick "
	       "+%d), healthy flagged %d/%d\n",
	       settled_at, 100 * max_err_after, covered, counted, max_width, half_flagged, n_half,
	       last_half_flag - warmup, healthy_flagged, healthy);
	ck_assert_int_eq(half_flagged, n_half);
	ck_assert_msg(healthy_flagged * 100 < healthy, "%d of %d healthy devices flagged",
		      healthy_flagged, healthy);
	vpp_fleet_free(S.f);
}
END_TEST

Suite *test_control_suite(void);

Suite *test_control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("closed_loop");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, step_response_cusum_calibration);
	suite_add_tcase(s, tc);
	return s;
}
