#include "vpp/ring.h"
#include "vpp/error.h"

#include <stdlib.h>
#include <string.h>

struct vpp_ring {
	/* Producer and consumer indexes on their own cache lines. */
	_Alignas(64) _Atomic size_t head; /* next slot to write */
	_Alignas(64) _Atomic size_t tail; /* next slot to read */
	_Alignas(64) size_t mask;
	size_t size;
	unsigned char *data;
};

int vpp_ring_new(size_t capacity, size_t size, vpp_ring **ret)
{
	if (capacity == 0 || size == 0 || capacity > ((size_t)1 << 30))
		return VPP_EINVAL;
	size_t cap = 1;
	while (cap < capacity)
		cap <<= 1;
	vpp_ring *r = aligned_alloc(64, sizeof(*r));
	if (!r)
		return VPP_ENOMEM;
	memset(r, 0, sizeof(*r));
	r->data = malloc(cap * size);
	if (!r->data) {
		free(r);
		return VPP_ENOMEM;
	}
	r->mask = cap - 1;
	r->size = size;
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	*ret = r;
	return 0;
}

void vpp_ring_free(vpp_ring *r)
{
	if (!r)
		return;
	free(r->data);
	free(r);
}

int vpp_ring_push(vpp_ring *r, const void *rec)
{
	size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (head - tail > r->mask)
		return VPP_EFULL;
	memcpy(r->data + (head & r->mask) * r->size, rec, r->size);
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
	return 0;
}

bool vpp_ring_pop(vpp_ring *r, void *rec)
{
	size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	if (tail == head)
		return false;
	memcpy(rec, r->data + (tail & r->mask) * r->size, r->size);
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
	return true;
}

size_t vpp_ring_count(const vpp_ring *r)
{
	size_t head = atomic_load_explicit(&((vpp_ring *)r)->head, memory_order_acquire);
	size_t tail = atomic_load_explicit(&((vpp_ring *)r)->tail, memory_order_acquire);
	return head - tail;
}

size_t vpp_ring_capacity(const vpp_ring *r)
{
	return r->mask + 1;
}
