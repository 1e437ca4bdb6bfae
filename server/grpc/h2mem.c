/* Memory for nghttp2 sessions that idle sessions do not keep resident.
 *
 * Every nghttp2 session allocates a frame buffer of one maximum frame
 * (16 KB) up front. A device session writes small frames, so only its first
 * page is ever written to, but a buffer from malloc sits in memory that
 * earlier (freed) allocations already made resident: 16 KB of RSS per
 * session, a third of the budget. Buffers of that size come from slots of
 * fresh anonymous pages instead; a freed slot's pages are returned to the
 * kernel (MADV_DONTNEED), so a slot costs only the pages really written.
 *
 * Every allocation carries a 16-byte header saying where it came from. */
#include "grpc_int.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HDR 16
#define SLOT (20 * 1024)	     /* a frame buffer (16 KB + headers) fits */
#define MIN_SLOTTED (12 * 1024) /* smaller requests go to malloc */
#define SLOTS_PER_REGION 1024	     /* 20 MB of address space per mmap */

enum { FROM_MALLOC = 1, FROM_SLOT = 2 };

typedef struct free_slot {
	struct free_slot *next;
} free_slot;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static free_slot *free_slots;

/* Refills the free list with one region of untouched pages. */
static int add_region(void)
{
	uint8_t *r = mmap(NULL, (size_t)SLOT * SLOTS_PER_REGION, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED)
		return -1;
	/* Pushed in reverse so that slots are handed out in address order;
	 * writing the link touches only each slot's first page. */
	for (int i = SLOTS_PER_REGION - 1; i >= 0; i--) {
		free_slot *s = (free_slot *)(r + (size_t)i * SLOT);
		s->next = free_slots;
		free_slots = s;
	}
	return 0;
}

static void *slot_get(void)
{
	pthread_mutex_lock(&mu);
	if (!free_slots && add_region() != 0) {
		pthread_mutex_unlock(&mu);
		return NULL;
	}
	free_slot *s = free_slots;
	free_slots = s->next;
	pthread_mutex_unlock(&mu);
	return s;
}

static void slot_put(void *p)
{
	/* Keep the first page (it holds the free-list link), drop the rest. */
	madvise((uint8_t *)p + 4096, SLOT - 4096, MADV_DONTNEED);
	pthread_mutex_lock(&mu);
	free_slot *s = p;
	s->next = free_slots;
	free_slots = s;
	pthread_mutex_unlock(&mu);
}

static void *h2_malloc(size_t size, void *ud)
{
	uint8_t *p;
	if (size >= MIN_SLOTTED && size <= SLOT - HDR) {
		if (!(p = slot_get()))
			return NULL;
		p[0] = FROM_SLOT;
	} else {
		if (size > SIZE_MAX - HDR || !(p = malloc(size + HDR)))
			return NULL;
		p[0] = FROM_MALLOC;
	}
	return p + HDR;
}

static void h2_free(void *ptr, void *ud)
{
	if (!ptr)
		return;
	uint8_t *p = (uint8_t *)ptr - HDR;
	if (p[0] == FROM_SLOT)
		slot_put(p);
	else
		free(p);
}

static void *h2_calloc(size_t n, size_t size, void *ud)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	void *p = h2_malloc(n * size, ud);
	if (p)
		memset(p, 0, n * size);
	return p;
}

/* A slot grows in place up to its size, then moves to malloc; a malloc
 * block stays in malloc (nghttp2 allocates its frame buffer from NULL). */
static void *h2_realloc(void *ptr, size_t size, void *ud)
{
	if (!ptr)
		return h2_malloc(size, ud);
	uint8_t *p = (uint8_t *)ptr - HDR;
	if (p[0] == FROM_SLOT) {
		if (size <= SLOT - HDR)
			return ptr;
		if (size > SIZE_MAX - HDR)
			return NULL;
		uint8_t *n = malloc(size + HDR);
		if (!n)
			return NULL;
		n[0] = FROM_MALLOC;
		memcpy(n + HDR, ptr, SLOT - HDR);
		slot_put(p);
		return n + HDR;
	}
	if (size > SIZE_MAX - HDR)
		return NULL;
	uint8_t *n = realloc(p, size + HDR);
	return n ? n + HDR : NULL;
}

nghttp2_mem *vpp__h2_mem(void)
{
	static nghttp2_mem mem = {NULL, h2_malloc, h2_free, h2_calloc, h2_realloc};
	return &mem;
}
