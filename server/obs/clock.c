/* vpp's wall clock (include/vpp/clock.h): the system clock, slewed through
 * steps. */
#include "vpp/clock.h"
#include "vpp/log.h"

#include <pthread.h>
#include <time.h>

/* A step is worth a log line from this size on. */
#define STEP_LOG_US 1000000

int64_t vpp_wall_slew_step(vpp_wall_slew *s, int64_t mono_us, int64_t system_us)
{
	int64_t want = system_us - mono_us;
	if (!s->started) {
		s->started = true;
		s->offset_us = want;
		s->last_mono_us = mono_us;
		return system_us;
	}
	int64_t elapsed = mono_us - s->last_mono_us;
	if (elapsed < 0)
		elapsed = 0;
	/* At most a tenth of the time passed: NTP's own slewing (at most
	 * 500 ppm) is followed exactly, a step is spread out. Only whole
	 * tenths are used up, so calls microseconds apart (every telemetry
	 * message) still add up to the full rate. */
	int64_t d = want - s->offset_us, max = elapsed / 10;
	if (d > max || d < -max) {
		s->offset_us += d > 0 ? max : -max;
		s->last_mono_us += max * 10;
	} else {
		s->offset_us = want;
		s->last_mono_us = mono_us;
	}
	return mono_us + s->offset_us;
}

static int64_t read_us(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static vpp_wall_slew slew;
static bool stepped; /* a step is being slewed: logged once */

int64_t vpp_wall_ms(void)
{
	pthread_mutex_lock(&lock);
	/* Both read under the lock: a wait for it between them would read as
	 * a step. */
	int64_t sys = read_us(CLOCK_REALTIME);
	int64_t now = vpp_wall_slew_step(&slew, read_us(CLOCK_MONOTONIC), sys);
	int64_t behind = sys - now;
	bool log = false;
	if (behind > STEP_LOG_US || behind < -STEP_LOG_US) {
		log = !stepped;
		stepped = true;
	} else if (behind < STEP_LOG_US / 10 && behind > -STEP_LOG_US / 10) {
		stepped = false;
	}
	pthread_mutex_unlock(&lock);
	if (log)
		vpp_log(VPP_LOG_WARN, "clock",
		        "the system clock stepped by %+lld ms: vpp's clock follows at a tenth of "
		        "real time (about %lld s), so leases and timeouts stay right",
		        (long long)(behind / 1000),
		        (long long)((behind < 0 ? -behind : behind) / 100000));
	return now / 1000;
}
