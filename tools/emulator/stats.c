/* Ground-truth statistics kept per worker and merged at the end: the
 * setpoint→ack latency histogram and the fan-out groups. */
#include "emul_int.h"
#include "vpp/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t bucket_of(uint64_t v)
{
	if (v < 16)
		return (size_t)v;
	int msb = 63 - __builtin_clzll(v);
	size_t sub = (size_t)((v >> (msb - 4)) & 15);
	return (size_t)(msb - 3) * 16 + sub;
}

/* Upper edge of bucket |i|. */
static uint64_t bucket_top(size_t i)
{
	if (i < 16)
		return i;
	int msb = (int)(i / 16) + 3;
	uint64_t sub = i % 16;
	return ((16 + sub + 1) << (msb - 4)) - 1;
}

void vpp__emul_hist_add(vpp__emul_hist *h, uint64_t us)
{
	size_t b = bucket_of(us);
	if (b >= VPP__EMUL_HIST_BUCKETS)
		b = VPP__EMUL_HIST_BUCKETS - 1;
	h->b[b]++;
	h->count++;
	if (us > h->max_us)
		h->max_us = us;
}

void vpp__emul_hist_merge(vpp__emul_hist *into, const vpp__emul_hist *h)
{
	for (size_t i = 0; i < VPP__EMUL_HIST_BUCKETS; i++)
		into->b[i] += h->b[i];
	into->count += h->count;
	if (h->max_us > into->max_us)
		into->max_us = h->max_us;
}

uint64_t vpp__emul_hist_quantile(const vpp__emul_hist *h, double q)
{
	if (h->count == 0)
		return 0;
	/* Nearest rank: the smallest sample with at least q of them at or
	 * below it (the 9th of 10 for p90, not the 10th). */
	double want = ceil(q * (double)h->count);
	uint64_t rank = want > 1 ? (uint64_t)want - 1 : 0;
	if (rank >= h->count)
		rank = h->count - 1;
	uint64_t seen = 0;
	for (size_t i = 0; i < VPP__EMUL_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen > rank) {
			uint64_t top = bucket_top(i);
			return top < h->max_us ? top : h->max_us;
		}
	}
	return h->max_us;
}

static uint64_t hash64(int64_t k)
{
	uint64_t x = (uint64_t)k * 0x9e3779b97f4a7c15ULL;
	return x ^ (x >> 29);
}

static vpp__emul_group *slot(vpp__emul_group *v, size_t cap, int64_t key, int64_t issued)
{
	size_t i = (size_t)(hash64(key) ^ hash64(issued)) & (cap - 1);
	while (v[i].count && (v[i].key != key || v[i].issued != issued))
		i = (i + 1) & (cap - 1);
	return &v[i];
}

int vpp__emul_groups_add(vpp__emul_groups *g, int64_t key, int64_t issued, int64_t at_us,
                         uint64_t count, int64_t last_us)
{
	if ((g->n + 1) * 2 > g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		vpp__emul_group *v = calloc(cap, sizeof(*v));
		if (!v)
			return VPP_ENOMEM;
		for (size_t i = 0; i < g->cap; i++)
			if (g->v[i].count)
				*slot(v, cap, g->v[i].key, g->v[i].issued) = g->v[i];
		free(g->v);
		g->v = v;
		g->cap = cap;
	}
	vpp__emul_group *s = slot(g->v, g->cap, key, issued);
	if (!s->count) {
		s->key = key;
		s->issued = issued;
		s->first_us = at_us;
		s->last_us = last_us;
		g->n++;
	}
	if (at_us < s->first_us)
		s->first_us = at_us;
	if (last_us > s->last_us)
		s->last_us = last_us;
	s->count += count;
	return 0;
}

void vpp__emul_groups_free(vpp__emul_groups *g)
{
	free(g->v);
	memset(g, 0, sizeof(*g));
}
