/*
 * hostname.h - the syntax of the DNS names Linkup hands out or answers for:
 * the worker's tunnel hostnames (DESIGN §8) and the names the local server
 * registers for a tunneled session (SPEC §5.2 step 4, §5.6).
 *
 * Pure; any thread.
 */
#ifndef LK_PROTO_HOSTNAME_H
#define LK_PROTO_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>

enum {
    LK_HOSTNAME_LABEL_MAX = 63, /* RFC 1035 §2.3.4 */
    LK_HOSTNAME_MAX = 253,      /* text form, no trailing dot */
};

/* Flags of lk_hostname_valid(). */
enum lk_hostname_flags {
    LK_HOSTNAME_HOST = 0,            /* letters, digits and '-' (RFC 1123 §2.1) */
    LK_HOSTNAME_UNDERSCORE = 1 << 0, /* '_' too (RFC 2181 §11: "_tcp"-style labels) */
};

/* True when s[0..len) is a DNS name: labels of 1 to LK_HOSTNAME_LABEL_MAX
 * ASCII letters, digits and '-' ('_' too with LK_HOSTNAME_UNDERSCORE) joined
 * by single dots, LK_HOSTNAME_MAX bytes at most. So no empty name, no empty
 * label (leading, trailing or doubled dot) and nothing else (spaces, '/',
 * ':', CR/LF, NUL, non-ASCII). Case is not looked at. A label may begin or
 * end with '-': neither caller ever refused it. flags: enum lk_hostname_flags. */
bool lk_hostname_valid(const char *s, size_t len, unsigned flags);

#endif
