/* Which devices misbehave, and how: disjoint slices of one seeded shuffle,
 * the same ones on every run with the same seed. Slice ends are the rounded
 * cumulative fractions, so every kind gets its share within one device and
 * the slices never add up to more than the fleet (rounding each kind on its
 * own gave the first kinds too many and starved the last). */
#include "physics.h"
#include "vpp/error.h"

#include <math.h>
#include <stdlib.h>

static const char *const names[VPP__EMUL_F__COUNT] = {
    "none", "offline", "flaky", "ignore", "partial", "late_ack", "malformed",
};

const char *vpp__emul_fault_name(int fault)
{
	return fault >= 0 && fault < VPP__EMUL_F__COUNT ? names[fault] : "unknown";
}

int vpp__emul_faults_assign(const double frac[VPP__EMUL_F__COUNT], size_t n, uint64_t seed,
                            uint8_t *out)
{
	double sum = 0;
	for (int k = 1; k < VPP__EMUL_F__COUNT; k++) {
		if (!(frac[k] >= 0 && frac[k] <= 1))
			return VPP_EINVAL;
		sum += frac[k];
	}
	if (sum > 1 + 1e-9)
		return VPP_EINVAL;
	uint32_t *perm = malloc((n ? n : 1) * sizeof(*perm));
	if (!perm)
		return VPP_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		perm[i] = (uint32_t)i;
		out[i] = VPP__EMUL_F_NONE;
	}
	vpp__emul_rng r;
	vpp__emul_rng_seed(&r, seed, 0xfa017);
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(vpp__emul_rng_uniform(&r) * (double)i);
		uint32_t t = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	size_t at = 0;
	double cum = 0;
	for (int k = 1; k < VPP__EMUL_F__COUNT; k++) {
		cum += frac[k];
		size_t end = (size_t)llround(cum * (double)n);
		for (; at < end && at < n; at++)
			out[perm[at]] = (uint8_t)k;
	}
	free(perm);
	return 0;
}
