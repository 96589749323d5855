/*
 * tlsconn.c - TLS new-connection load generator for bench/run.sh.
 *
 * wrk and h2load take the TLS server name (SNI) from the URL host, so they
 * cannot reach a local server that picks its certificate by SNI
 * (bench.example.com) on 127.0.0.1 without editing /etc/hosts. This tool
 * connects to an IP:port, sends the SNI and Host it is given, and measures
 * one full TLS handshake + one HTTP/1.1 request (Connection: close) per
 * connection, with N threads each running connections back to back.
 *
 * Usage: tlsconn IP PORT SNI PATH CONNS SECONDS
 * Prints one line: RESULT rps=.. p50_us=.. p90_us=.. p99_us=.. max_us=..
 *   reqs=.. errors=.. secs=.. proto=TLSv1.3 (per-connection latency from
 *   connect() to the end of the response).
 * Built by run.sh: cc -O2 -o tlsconn tlsconn.c -lssl -lcrypto -lpthread.
 * Certificates are not verified (the benchmark measures cost, not trust).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (1u << 20)

struct job {
    pthread_t tid;
    SSL_CTX *ctx;
    struct sockaddr_in addr;
    char *sni; /* not const: SSL_set_tlsext_host_name() takes void * */
    const char *req;
    size_t req_len;
    double deadline;
    unsigned long n_ok;
    unsigned long n_err;
    unsigned *lat_us; /* per-thread samples */
    size_t n_lat;
    size_t cap_lat;
    char proto[32];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One connection: handshake, request, read to EOF. Returns 0 on a 2xx. */
static int one_conn(struct job *j)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), rc = -1, one = 1;
    SSL *ssl = NULL;
    char buf[16384], head[16];
    size_t got = 0;

    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&j->addr, sizeof(j->addr)) != 0)
        goto out;
    ssl = SSL_new(j->ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, j->sni);
    if (SSL_connect(ssl) != 1)
        goto out;
    if (!j->proto[0])
        snprintf(j->proto, sizeof(j->proto), "%s", SSL_get_version(ssl));
    if (SSL_write(ssl, j->req, (int)j->req_len) != (int)j->req_len)
        goto out;
    for (;;) {
        int n = SSL_read(ssl, buf, (int)sizeof(buf));
        if (n <= 0)
            break;
        if (got < sizeof(head)) {
            size_t k = sizeof(head) - got < (size_t)n ? sizeof(head) - got : (size_t)n;
            memcpy(head + got, buf, k);
        }
        got += (size_t)n;
    }
    if (got >= 12 && memcmp(head, "HTTP/1.1 2", 10) == 0)
        rc = 0;
out:
    if (ssl)
        SSL_free(ssl);
    close(fd);
    return rc;
}

static void *run(void *arg)
{
    struct job *j = arg;
    while (now_s() < j->deadline) {
        double t0 = now_s();
        if (one_conn(j) == 0) {
            j->n_ok++;
            if (j->n_lat < j->cap_lat)
                j->lat_us[j->n_lat++] = (unsigned)((now_s() - t0) * 1e6);
        } else {
            j->n_err++;
        }
    }
    return NULL;
}

static int cmp_u(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

static unsigned pct(const unsigned *v, size_t n, double p)
{
    size_t i;
    if (n == 0)
        return 0;
    i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i];
}

int main(int argc, char **argv)
{
    struct job *jobs;
    unsigned *all;
    size_t n_all = 0;
    unsigned long ok = 0, err = 0;
    int conns, secs;
    double t0, el;
    char req[1024];
    SSL_CTX *ctx;

    if (argc != 7) {
        fprintf(stderr, "usage: tlsconn IP PORT SNI PATH CONNS SECONDS\n");
        return 2;
    }
    conns = (int)strtol(argv[5], NULL, 10);
    secs = (int)strtol(argv[6], NULL, 10);
    if (conns < 1 || conns > 1024 || secs < 1) {
        fprintf(stderr, "tlsconn: bad CONNS or SECONDS\n");
        return 2;
    }
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", argv[4],
             argv[3]);
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* full handshakes */
    jobs = calloc((size_t)conns, sizeof(*jobs));
    if (!jobs)
        return 1;
    t0 = now_s();
    for (int i = 0; i < conns; i++) {
        struct job *j = &jobs[i];
        j->ctx = ctx;
        j->addr.sin_family = AF_INET;
        j->addr.sin_port = htons((unsigned short)strtol(argv[2], NULL, 10));
        if (inet_pton(AF_INET, argv[1], &j->addr.sin_addr) != 1) {
            fprintf(stderr, "tlsconn: bad IPv4 address %s\n", argv[1]);
            return 2;
        }
        j->sni = argv[3];
        j->req = req;
        j->req_len = strlen(req);
        j->deadline = t0 + secs;
        j->cap_lat = MAX_SAMPLES / (size_t)conns;
        j->lat_us = malloc(j->cap_lat * sizeof(unsigned));
        if (!j->lat_us || pthread_create(&j->tid, NULL, run, j) != 0)
            return 1;
    }
    for (int i = 0; i < conns; i++)
        pthread_join(jobs[i].tid, NULL);
    el = now_s() - t0;
    all = malloc(MAX_SAMPLES * sizeof(unsigned));
    if (!all)
        return 1;
    for (int i = 0; i < conns; i++) {
        memcpy(all + n_all, jobs[i].lat_us, jobs[i].n_lat * sizeof(unsigned));
        n_all += jobs[i].n_lat;
        ok += jobs[i].n_ok;
        err += jobs[i].n_err;
    }
    qsort(all, n_all, sizeof(unsigned), cmp_u);
    printf("RESULT rps=%.1f p50_us=%u p90_us=%u p99_us=%u max_us=%u reqs=%lu errors=%lu "
           "secs=%.3f proto=%s\n",
           (double)ok / el, pct(all, n_all, 50), pct(all, n_all, 90), pct(all, n_all, 99),
           n_all ? all[n_all - 1] : 0, ok, err, el, jobs[0].proto[0] ? jobs[0].proto : "none");
    for (int i = 0; i < conns; i++)
        free(jobs[i].lat_us);
    free(jobs);
    free(all);
    SSL_CTX_free(ctx);
    return ok > 0 ? 0 : 1;
}
