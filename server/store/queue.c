/* Bounded lock-free queue of telemetry rows: many producers (the I/O
 * threads), one consumer (the store thread). Each cell carries a sequence
 * number that tells producers and the consumer whose turn it is (Vyukov's
 * bounded queue), so no lock is taken per row. */
#include "store_int.h"
#include "vpp/error.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct {
	atomic_size_t seq;
	vpp_telemetry_row row;
} cell;

struct vpp__rowq {
	cell *cells;
	size_t mask;
	alignas(64) atomic_size_t tail; /* next slot producers claim */
	alignas(64) atomic_size_t head; /* next slot the consumer reads */
};

int vpp__rowq_new(size_t cap, vpp__rowq **ret)
{
	size_t n = 2;
	while (n < cap)
		n *= 2;
	vpp__rowq *q = calloc(1, sizeof(*q));
	if (!q)
		return VPP_ENOMEM;
	if (!(q->cells = malloc(n * sizeof(cell)))) {
		free(q);
		return VPP_ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		atomic_init(&q->cells[i].seq, i);
	q->mask = n - 1;
	atomic_init(&q->tail, 0);
	atomic_init(&q->head, 0);
	*ret = q;
	return 0;
}

void vpp__rowq_free(vpp__rowq *q)
{
	if (!q)
		return;
	free(q->cells);
	free(q);
}

int vpp__rowq_push(vpp__rowq *q, const vpp_telemetry_row *r, size_t *depth)
{
	size_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
	cell *c;
	for (;;) {
		c = &q->cells[pos & q->mask];
		size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		intptr_t dif = (intptr_t)seq - (intptr_t)pos;
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1,
			                                          memory_order_relaxed,
			                                          memory_order_relaxed))
				break;
		} else if (dif < 0) {
			return VPP_EFULL;
		} else {
			pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
		}
	}
	c->row = *r;
	atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
	*depth = pos + 1 - atomic_load_explicit(&q->head, memory_order_relaxed);
	return 0;
}

bool vpp__rowq_pop(vpp__rowq *q, vpp_telemetry_row *r)
{
	size_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
	cell *c = &q->cells[pos & q->mask];
	size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
	if ((intptr_t)seq - (intptr_t)(pos + 1) < 0)
		return false;
	*r = c->row;
	atomic_store_explicit(&c->seq, pos + q->mask + 1, memory_order_release);
	atomic_store_explicit(&q->head, pos + 1, memory_order_relaxed);
	return true;
}

size_t vpp__rowq_depth(const vpp__rowq *q)
{
	size_t t = atomic_load_explicit(&((vpp__rowq *)q)->tail, memory_order_relaxed);
	size_t h = atomic_load_explicit(&((vpp__rowq *)q)->head, memory_order_relaxed);
	return t > h ? t - h : 0;
}
