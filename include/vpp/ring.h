/* A bounded single-producer single-consumer ring of fixed-size records.
 * One thread pushes, one other thread pops; no lock, two atomics. Threads
 * talk through these plus uv_async_send (DESIGN.md §3). */
#ifndef VPP_RING_H
#define VPP_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vpp_ring vpp_ring;

/* Creates a ring of |capacity| records (rounded up to a power of two) of
 * |size| bytes each. Returns 0, VPP_EINVAL or VPP_ENOMEM. */
int vpp_ring_new(size_t capacity, size_t size, vpp_ring **ret);
void vpp_ring_free(vpp_ring *r);

/* Producer: copies |rec| in. Returns 0 or VPP_EFULL (nothing copied). */
int vpp_ring_push(vpp_ring *r, const void *rec);

/* Consumer: copies the oldest record out. Returns true, or false when the
 * ring is empty. */
bool vpp_ring_pop(vpp_ring *r, void *rec);

/* Records in the ring now (approximate when the other side is active). */
size_t vpp_ring_count(const vpp_ring *r);
size_t vpp_ring_capacity(const vpp_ring *r);

#endif
