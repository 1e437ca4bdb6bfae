/* Wall-clock time in Unix milliseconds: the unit of every timestamp vpp
 * sends or stores (durations use the loops' monotonic clocks instead).
 *
 * vpp's wall clock never jumps. It follows the system clock, NTP's gradual
 * corrections included, but when the system clock is stepped (set by hand,
 * or NTP's step at boot) it slews to the new time at a tenth of the time
 * that passes (a 60 s step takes 10 minutes) instead of jumping: leases,
 * staleness and ack timeouts, all differences of this clock, stay right
 * through a step, and it never goes backwards. */
#ifndef VPP_CLOCK_H
#define VPP_CLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

int64_t vpp_wall_ms(void);

/* The slewing itself, in microseconds (vpp_wall_ms runs one for the
 * process): feed it the monotonic and the system clock's readings, get
 * vpp's time. Lock-free, for any number of threads: it is read for every
 * telemetry message. Zero-initialised. */
typedef struct {
	_Atomic int started;          /* 0 no, 1 starting, 2 yes */
	_Atomic int64_t offset_us;    /* vpp time = monotonic + offset */
	_Atomic int64_t last_mono_us; /* the slew has used the time up to here */
} vpp_wall_slew;

int64_t vpp_wall_slew_step(vpp_wall_slew *s, int64_t mono_us, int64_t system_us);

#endif
