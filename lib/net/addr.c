/*
 * addr.c - parsing and printing "A:P" socket addresses.
 */
#include "net/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/str.h"

static int parse_port(const char *s, int *port)
{
    uint64_t v = 0;
    if (lk_str_to_u64(lk_str_c(s), 65535, &v) != 0)
        return LK_EINVAL;
    *port = (int)v;
    return 0;
}

int lk_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *ss_len)
{
    char host[64];
    const char *port_str = NULL;
    size_t host_len = 0;
    memset(ss, 0, sizeof(*ss));
    if (s == NULL)
        return LK_EINVAL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return LK_EINVAL;
        host_len = (size_t)(close - s - 1);
        if (host_len >= sizeof(host))
            return LK_EINVAL;
        memcpy(host, s + 1, host_len);
        port_str = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return LK_EINVAL;
        host_len = (size_t)(colon - s);
        if (host_len >= sizeof(host))
            return LK_EINVAL;
        memcpy(host, s, host_len);
        port_str = colon + 1;
    }
    host[host_len] = '\0';
    int port = 0;
    if (parse_port(port_str, &port) != 0)
        return LK_EINVAL;
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (s[0] != '[' && strcmp(host, "localhost") == 0) {
        memcpy(host, "127.0.0.1", sizeof("127.0.0.1"));
    }
    if (s[0] != '[' && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *ss_len = sizeof(*v4);
        return 0;
    }
    if (s[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *ss_len = sizeof(*v6);
        return 0;
    }
    return LK_EINVAL;
}

char *lk_addr_format(const struct sockaddr *sa, char *out, size_t out_len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int n = -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof(ip));
        n = snprintf(out, out_len, "%s:%d", ip, ntohs(v4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof(ip));
        n = snprintf(out, out_len, "[%s]:%d", ip, ntohs(v6->sin6_port));
    } else if (out_len > 0) {
        n = snprintf(out, out_len, "unix");
    }
    if (n < 0 && out_len > 0)
        out[0] = '\0';
    return out;
}

bool lk_addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)(const void *)sa;
        const unsigned char *b = v6->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) && b[12] == 127;
    }
    return false;
}

int lk_addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    return 0;
}
