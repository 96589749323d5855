/*
 * addr.h - "A:P" listen/connect addresses (DESIGN §3).
 *
 * lk_addr_parse() turns "127.0.0.1:8080", "0.0.0.0:0", "[::1]:443" or
 * "localhost:80" (localhost only: other names are not resolved here) into a
 * sockaddr; lk_addr_format() prints one back as "A:P" / "[v6]:P" for the
 * "HTTP listening on A:P" lines and log lines. Loop-free; any thread.
 */
#ifndef LK_NET_ADDR_H
#define LK_NET_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Parses s (NUL-terminated) into *ss and *ss_len. The host is an IPv4
 * address, a bracketed IPv6 address, or "localhost" (127.0.0.1); the port is
 * 0..65535 (0 = ephemeral). Returns 0 or LK_EINVAL. The value "off" is not
 * handled here (programs check it first). */
int lk_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *ss_len);

/* Writes sa as "A:P" or "[v6]:P" into out (out_len bytes; 64 is enough;
 * always NUL-terminated). Returns out. */
char *lk_addr_format(const struct sockaddr *sa, char *out, size_t out_len);

/* True for 127.0.0.0/8, ::1 and IPv4-mapped 127.0.0.0/8. */
bool lk_addr_is_loopback(const struct sockaddr *sa);

/* Port of an AF_INET/AF_INET6 address (host order), 0 otherwise. */
int lk_addr_port(const struct sockaddr *sa);

#endif
