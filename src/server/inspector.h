/*
 * inspector.h - the local server's request inspector (DESIGN §7): the last
 * LOCAL_INSPECTOR_MAX requests the server answered, newest first, for
 * `GET /linkup/inspector/requests` (JSON) and the page at
 * `GET /linkup/inspector` that polls it.
 *
 * Each entry keeps one allocation (its strings, the path cut at
 * LOCAL_INSPECTOR_MAX_PATH bytes); the oldest is freed when the ring is
 * full, so the memory is bounded whatever the traffic.
 *
 * Threading: loop thread only.
 */
#ifndef LK_SERVER_INSPECTOR_H
#define LK_SERVER_INSPECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/str.h"

#define LOCAL_INSPECTOR_MAX      256
#define LOCAL_INSPECTOR_MAX_PATH 2048

struct lk_access_entry;

struct local_inspector_entry {
    uint64_t seq;    /* 1, 2, … in arrival order */
    int64_t time_ms; /* wall clock at completion, ms since the epoch */
    char *mem;       /* owned: the strings below point into it */
    size_t mem_cap;  /* kept for the slot's next entry (no malloc per request) */
    const char *method, *host, *path, *session, *service; /* NULL: absent */
    int status;
    uint64_t bytes, ms;
};

struct local_inspector {
    struct local_inspector_entry ring[LOCAL_INSPECTOR_MAX];
    size_t next; /* slot of the next entry */
    uint64_t seq;
};

void local_inspector_init(struct local_inspector *in);
void local_inspector_release(struct local_inspector *in);

/* Records e (copied); the engine's on_access callback, data is the
 * struct local_inspector. */
void local_inspector_record(void *data, const struct lk_access_entry *e);

/* Appends {"requests":[...]} to out: at most limit entries, newest first,
 * only those of session when session.len > 0, only those newer than
 * after_seq (all when after_seq is past the newest entry's: a cursor from
 * before a restart). Each: {"seq","time","method","host","path","session",
 * "service","status","bytes","ms"} ("time" RFC 3339 UTC with ms; absent
 * strings are null). */
void local_inspector_json(const struct local_inspector *in, struct lk_str session, size_t limit,
                          uint64_t after_seq, struct lk_buf *out);

/* The page (text/html, self-contained) and its length. */
extern const char local_inspector_page[];
extern const size_t local_inspector_page_len;

#endif
