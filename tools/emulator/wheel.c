/* A hashed timing wheel: one per worker, 1 ms slots, driven by one libuv
 * timer. Every device has one pending deadline (its next telemetry, drop,
 * malformed message or reconnect); arming and cancelling are a list
 * insert and unlink, where one uv_timer per device costs a heap insert and
 * removal (log n pointer chases) each time. */
#include "emul_int.h"

#include <string.h>

static vpp__emul_wnode *slot_of(vpp__emul_wheel *wh, uint64_t ms)
{
	return &wh->slot[ms & (VPP__EMUL_WHEEL_SLOTS - 1)];
}

static void unlink_node(vpp__emul_wnode *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

static void push(vpp__emul_wnode *head, vpp__emul_wnode *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static void on_uv_timer(uv_timer_t *t);

/* Starts the libuv timer for the first non-empty slot. A slot may hold
 * only later rounds; then the timer fires, finds nothing due and is
 * armed again, which is rare (deadlines over the wheel's span). */
static void rearm(vpp__emul_wheel *wh)
{
	if (wh->n == 0) {
		uv_timer_stop(&wh->timer);
		return;
	}
	uint64_t now = uv_now(wh->timer.loop);
	uint64_t ms = wh->next_ms;
	for (uint64_t i = 0; i < VPP__EMUL_WHEEL_SLOTS; i++, ms++) {
		vpp__emul_wnode *head = slot_of(wh, ms);
		if (head->next != head)
			break;
	}
	wh->timer_due_ms = ms;
	uv_timer_start(&wh->timer, on_uv_timer, ms > now ? ms - now : 0, 0);
}

static void on_uv_timer(uv_timer_t *t)
{
	vpp__emul_wheel *wh = t->data;
	uint64_t now = uv_now(t->loop);
	while (wh->next_ms <= now && wh->n > 0) {
		uint64_t ms = wh->next_ms++;
		vpp__emul_wnode *head = slot_of(wh, ms), due;
		/* Take the slot's list: callbacks that arm again land in
		 * later slots (next_ms has moved on) and are not seen here. */
		if (head->next == head)
			continue;
		due.next = head->next;
		due.prev = head->prev;
		due.next->prev = &due;
		due.prev->next = &due;
		head->next = head->prev = head;
		while (due.next != &due) {
			vpp__emul_wnode *n = due.next;
			unlink_node(n);
			if (n->due_ms > now) {
				push(head, n); /* a later round */
				continue;
			}
			wh->n--;
			wh->fire(n);
		}
	}
	if (wh->next_ms <= now)
		wh->next_ms = now + 1; /* the wheel was empty: nothing to catch up */
	rearm(wh);
}

void vpp__emul_wheel_init(vpp__emul_wheel *wh, uv_loop_t *loop, void (*fire)(vpp__emul_wnode *))
{
	memset(wh, 0, sizeof(*wh));
	for (size_t i = 0; i < VPP__EMUL_WHEEL_SLOTS; i++)
		wh->slot[i].next = wh->slot[i].prev = &wh->slot[i];
	uv_timer_init(loop, &wh->timer);
	wh->timer.data = wh;
	wh->fire = fire;
	wh->next_ms = uv_now(loop);
}

void vpp__emul_wheel_arm(vpp__emul_wheel *wh, vpp__emul_wnode *n, uint64_t delay_ms)
{
	if (n->next)
		vpp__emul_wheel_cancel(wh, n);
	uint64_t now = uv_now(wh->timer.loop);
	if (wh->n == 0 && wh->next_ms < now)
		wh->next_ms = now; /* idle until now: no empty slots to walk */
	uint64_t due = now + delay_ms;
	if (due < wh->next_ms)
		due = wh->next_ms; /* that slot has been taken: the next one */
	n->due_ms = due;
	push(slot_of(wh, due), n);
	bool first = wh->n++ == 0;
	/* The timer is set for the earliest slot; only an earlier deadline
	 * (or the first) moves it. */
	if (first || due < wh->timer_due_ms) {
		wh->timer_due_ms = due;
		uv_timer_start(&wh->timer, on_uv_timer, due > now ? due - now : 0, 0);
	}
}

void vpp__emul_wheel_cancel(vpp__emul_wheel *wh, vpp__emul_wnode *n)
{
	if (!n->next)
		return;
	unlink_node(n);
	wh->n--;
}

bool vpp__emul_wheel_armed(const vpp__emul_wnode *n)
{
	return n->next != NULL;
}
