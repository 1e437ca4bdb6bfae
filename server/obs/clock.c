/* vpp's wall clock (include/vpp/clock.h): the system clock, slewed through
 * steps. */
#include "vpp/clock.h"
#include "vpp/log.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

/* A step is worth a log line from this size on. */
#define STEP_LOG_US 1000000

int64_t vpp_wall_slew_step(vpp_wall_slew *s, int64_t mono_us, int64_t system_us)
{
	int64_t want = system_us - mono_us;
	int st = atomic_load_explicit(&s->started, memory_order_acquire);
	if (st != 2) {
		if (st == 0 && atomic_compare_exchange_strong(&s->started, &st, 1)) {
			atomic_store(&s->offset_us, want);
			atomic_store(&s->last_mono_us, mono_us);
			atomic_store_explicit(&s->started, 2, memory_order_release);
		}
		return system_us; /* the first reading, or one racing it */
	}
	int64_t off = atomic_load(&s->offset_us), last = atomic_load(&s->last_mono_us);
	int64_t elapsed = mono_us > last ? mono_us - last : 0;
	/* At most a tenth of the time passed: NTP's own slewing (at most
	 * 500 ppm) is followed exactly, a step is spread out. Only whole
	 * tenths are used up, so calls microseconds apart (every telemetry
	 * message) still add up to the full rate; the compare-and-swap lets
	 * one thread use each stretch of time. Threads that race may store
	 * offsets a few microseconds apart: nothing at the milliseconds
	 * vpp_wall_ms gives. */
	int64_t d = want - off, max = elapsed / 10;
	if (d <= max && d >= -max) {
		atomic_store(&s->offset_us, want);
		atomic_store(&s->last_mono_us, mono_us);
		return system_us;
	}
	if (max > 0 && atomic_compare_exchange_strong(&s->last_mono_us, &last, last + max * 10))
		off = atomic_fetch_add(&s->offset_us, d > 0 ? max : -max) + (d > 0 ? max : -max);
	return mono_us + off;
}

static int64_t read_us(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static vpp_wall_slew slew;
static _Atomic bool stepped; /* a step is being slewed: logged once */

int64_t vpp_wall_ms(void)
{
	int64_t sys = read_us(CLOCK_REALTIME);
	int64_t now = vpp_wall_slew_step(&slew, read_us(CLOCK_MONOTONIC), sys);
	int64_t behind = sys - now;
	if (behind > STEP_LOG_US || behind < -STEP_LOG_US) {
		if (!atomic_exchange(&stepped, true))
			vpp_log(VPP_LOG_WARN, "clock",
			        "the system clock stepped by %+lld ms: vpp's clock follows at a "
			        "tenth of real time (about %lld s), so leases and timeouts stay "
			        "right",
			        (long long)(behind / 1000),
			        (long long)((behind < 0 ? -behind : behind) / 100000));
	} else if (behind < STEP_LOG_US / 10 && behind > -STEP_LOG_US / 10 &&
	           atomic_load_explicit(&stepped, memory_order_relaxed)) {
		atomic_store(&stepped, false);
	}
	return now / 1000;
}
