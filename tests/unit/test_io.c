/*
 * test_io.c - lib/net/io.c's bufferevent pair helpers: an end whose partner
 * was freed is orphaned, and what it still holds to write can be dropped
 * (libevent freezes the start of a bufferevent's output, so a plain
 * evbuffer_drain() on it fails: the WebSocket relay used to wait for such
 * bytes until the drain deadline).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "harness.h"
#include "net/http_internal.h"

static void test_orphaned_end_drops_its_output(void)
{
    struct event_base *base = event_base_new();
    struct bufferevent *pair[2];
    CHECK_INT_EQ(bufferevent_pair_new(base, 0, pair), 0);
    CHECK(!lk_net_bev_orphaned(pair[0]));
    lk_net_bev_free(pair[1]);
    CHECK(lk_net_bev_orphaned(pair[0]));

    struct evbuffer *out = bufferevent_get_output(pair[0]);
    CHECK_INT_EQ(evbuffer_add(out, "close frame", 11), 0);
    CHECK_INT_EQ(evbuffer_get_length(out), 11);
    /* What the relay did before: refused, the bytes stay. */
    CHECK_INT_EQ(evbuffer_drain(out, 11), -1);
    CHECK_INT_EQ(evbuffer_get_length(out), 11);
    lk_net_drop_output(pair[0]);
    CHECK_INT_EQ(evbuffer_get_length(out), 0);
    /* Still a working output afterwards (frozen again at its start only). */
    CHECK_INT_EQ(evbuffer_add(out, "x", 1), 0);
    CHECK_INT_EQ(evbuffer_drain(out, 1), -1);
    lk_net_drop_output(pair[0]);
    CHECK_INT_EQ(evbuffer_get_length(out), 0);

    bufferevent_free(pair[0]);
    event_base_free(base);
}

int main(void)
{
    RUN(test_orphaned_end_drops_its_output);
    return DONE();
}
