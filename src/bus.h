// bus.h: messages between the loops of a process (lupine.broadcast and
// lupine.subscribe). A loop that subscribes attaches an endpoint; a publish
// from any thread copies its bytes into one task per subscribing endpoint and
// posts it to that endpoint's loop, where deliver() runs. Tasks from one
// thread reach a loop in the order they were posted (its queue is FIFO), so
// messages arrive in order per sender.
//
// Bounds: an endpoint holds at most max_queued undelivered messages; a
// publish finding one full skips it (and counts it in *dropped), so a worker
// that falls behind never makes the process's memory grow.
//
// Threads: the endpoint list and topic sets are under one mutex (publish,
// subscribe, detach). An endpoint is freed when it is detached and no task
// refers to it any more (refs: atomic). deliver() runs on the endpoint's loop
// thread only, and never after lp_bus_detach returned.
#ifndef LP_BUS_H
#define LP_BUS_H

#include "common.h"
#include "loop.h"

#define LP_BUS_TOPIC_MAX 1024
#define LP_BUS_DEFAULT_QUEUE 10000

typedef struct lp_bus_ep lp_bus_ep;
// On the endpoint's loop: a message (bytes owned by the bus, valid during the call).
typedef void (*lp_bus_deliver)(void *ud, const char *topic, size_t tlen, const char *data, size_t len);

// Attach an endpoint for loop (its thread). NULL when out of memory.
lp_bus_ep *lp_bus_attach(lp_loop *loop, lp_bus_deliver fn, void *ud, size_t max_queued);
// The loop's thread: no deliver() after this; undelivered messages are dropped.
void lp_bus_detach(lp_bus_ep *ep);
void lp_bus_set_max_queued(lp_bus_ep *ep, size_t max_queued);
// Count subscribers of topic on this endpoint (publish reports the sum);
// delta +1 or -1. 0, -ENOMEM, or -EINVAL (topic too long).
int lp_bus_subscribe(lp_bus_ep *ep, const char *topic, size_t tlen, int delta);
// Publish to every endpoint with subscribers of topic. Returns 0 or -ENOMEM
// (nothing sent anywhere); *receivers: subscribers reached (the sum of the
// endpoints' counts), *dropped: endpoints skipped, being full.
int lp_bus_publish(const char *topic, size_t tlen, const char *data, size_t len, size_t *receivers,
                   size_t *dropped);
// Undelivered messages of ep (any thread; a snapshot).
size_t lp_bus_queued(const lp_bus_ep *ep);

#endif
