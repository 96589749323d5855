/*
 * test_log.c - lib/net/log: LINKUP_LOG values in env_logger's syntax
 * (SPEC §6.1), shared by the CLI, the local server and the worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "harness.h"
#include "net/log.h"

static void test_level_parse(void)
{
    static const struct {
        const char *value;
        int rc;
        enum lk_log_level level;
    } cases[] = {
        { NULL, 0, LK_LOG_INFO },
        { "", 0, LK_LOG_INFO },
        { "off", 0, LK_LOG_OFF },
        { "error", 0, LK_LOG_ERROR },
        { "WARN", 0, LK_LOG_WARN },
        { "warning", 0, LK_LOG_WARN },
        { "info", 0, LK_LOG_INFO },
        { "debug", 0, LK_LOG_DEBUG },
        { "trace", 0, LK_LOG_DEBUG },
        /* Directives: those for linkup... count and beat a bare level (as
         * env_logger: the more specific name wins); among them the most
         * verbose, among bare levels the last. */
        { "linkup=debug", 0, LK_LOG_DEBUG },
        { "linkup_cli=warn", 0, LK_LOG_WARN },
        { "info,linkup=warn", 0, LK_LOG_WARN },
        { "linkup=error,debug", 0, LK_LOG_ERROR },
        { "debug,linkup_cli=off", 0, LK_LOG_OFF },
        { "linkup_cli=warn,linkup_local_server=debug", 0, LK_LOG_DEBUG },
        { "warn,error", 0, LK_LOG_ERROR },
        { "error,hyper=debug", 0, LK_LOG_ERROR },
        { "linkup", 0, LK_LOG_DEBUG },
        { "linkup=nonsense", 0, LK_LOG_INFO },
        { "warn/some regex", 0, LK_LOG_WARN },
        /* Nothing for Linkup: INFO, reported. */
        { "hyper=debug", LK_EINVAL, LK_LOG_INFO },
        { "verbose", LK_EINVAL, LK_LOG_INFO },
        { ",", LK_EINVAL, LK_LOG_INFO },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum lk_log_level level = LK_LOG_DEBUG;
        CHECK_INT_EQ(lk_log_level_parse(cases[i].value, &level), cases[i].rc);
        CHECK_INT_EQ(level, cases[i].level);
    }
}

static void test_off_disables_everything(void)
{
    lk_log_set_level(LK_LOG_OFF);
    CHECK(!lk_log_enabled(LK_LOG_ERROR));
    lk_log_set_level(LK_LOG_ERROR);
    CHECK(lk_log_enabled(LK_LOG_ERROR));
    CHECK(!lk_log_enabled(LK_LOG_WARN));
    lk_log_set_level(LK_LOG_INFO);
}

/* An access line stays one line whatever its fields hold: control bytes
 * (a service name may carry CR and LF) are written \xHH. */
static void test_access_line_escapes_controls(void)
{
    char path[] = "/tmp/lk-test-log-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    lk_log_set_level(LK_LOG_INFO);
    struct lk_access_entry e = {
        .method = "GET",
        .method_len = 3,
        .host = "a.example.com",
        .host_len = 13,
        .path = "/0123456789abcdefgh\x01/z\t", /* past whole words, and the tail */
        .path_len = 24,
        .session = "tiny",
        .service = "fe\r\n[INFO] forged\x7f",
        .status = 400,
    };
    lk_log_access(&e);
    lk_log_flush();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char text[512] = { 0 };
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    unlink(path);
    CHECK(n > 0);
    CHECK(strchr(text, '\n') == text + n - 1); /* one line */
    CHECK(strstr(text, "access GET a.example.com /0123456789abcdefgh\\x01/z\\x09 session=tiny "
                       "service=fe\\x0d\\x0a[INFO] forged\\x7f status=400 ") != NULL);
}

int main(void)
{
    RUN(test_level_parse);
    RUN(test_off_disables_everything);
    RUN(test_access_line_escapes_controls);
    return DONE();
}
