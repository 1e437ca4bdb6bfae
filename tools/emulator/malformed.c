/* Messages of the malformed fault. Each must be refused by a correct server
 * (INVALID_ARGUMENT): bytes that are not a protobuf DeviceMessage, and
 * Telemetry values no meter can produce. */
#include "emul_int.h"
#include "vpp/v1/device.pb-c.h"

#include <math.h>
#include <string.h>

size_t vpp__emul_malformed(vpp__emul_rng *r, uint64_t seq, int64_t now_ms, uint8_t *buf, size_t cap,
                           const char **kind)
{
	int which = (int)(vpp__emul_rng_uniform(r) * 3);
	if (which == 0) {
		/* Field 1 with wire type 7 (which does not exist), then noise:
		 * no protobuf parser accepts it. */
		size_t n = 16 + (size_t)(vpp__emul_rng_uniform(r) * 32);
		if (n > cap)
			n = cap;
		buf[0] = 0x0f;
		for (size_t i = 1; i < n; i++)
			buf[i] = (uint8_t)vpp__emul_rng_next(r);
		*kind = "garbage";
		return n;
	}
	Vpp__V1__DeviceMessage m = VPP__V1__DEVICE_MESSAGE__INIT;
	Vpp__V1__Telemetry t = VPP__V1__TELEMETRY__INIT;
	m.msg_case = VPP__V1__DEVICE_MESSAGE__MSG_TELEMETRY;
	m.telemetry = &t;
	t.seq = seq;
	t.measured_at_ms = now_ms;
	t.power_sigma_kw = 0.05;
	t.soc_sigma = 0.01;
	if (which == 1) {
		t.power_kw = NAN;
		t.soc = 0.5;
		*kind = "nan_power";
	} else {
		t.power_kw = 0;
		t.soc = 1.7;
		*kind = "soc_out_of_range";
	}
	if (vpp__v1__device_message__get_packed_size(&m) > cap)
		return 0;
	return vpp__v1__device_message__pack(&m, buf);
}
