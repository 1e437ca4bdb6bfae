/* Deterministic random numbers: the same --seed gives the same fleet,
 * faults and noise on every run and machine. xoshiro256** (Blackman and
 * Vigna), seeded through splitmix64. */
#include "physics.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void vpp__emul_rng_seed(vpp__emul_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t vpp__emul_rng_next(vpp__emul_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double vpp__emul_rng_uniform(vpp__emul_rng *r)
{
	return (double)(vpp__emul_rng_next(r) >> 11) * 0x1.0p-53;
}

double vpp__emul_rng_range(vpp__emul_rng *r, double lo, double hi)
{
	return lo + (hi - lo) * vpp__emul_rng_uniform(r);
}

/* Box-Muller; one of the pair is dropped, which keeps the generator state
 * the only state. */
double vpp__emul_rng_normal(vpp__emul_rng *r)
{
	double u1 = vpp__emul_rng_uniform(r), u2 = vpp__emul_rng_uniform(r);
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
