/* Wall-clock time in Unix milliseconds: the unit of every timestamp vpp
 * sends or stores (durations use the loops' monotonic clocks instead). */
#ifndef VPP_CLOCK_H
#define VPP_CLOCK_H

#include <stdint.h>

int64_t vpp_wall_ms(void);

#endif
