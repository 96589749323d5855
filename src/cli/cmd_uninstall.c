/*
 * cmd_uninstall.c - `linkup uninstall [--yes]` (SPEC §6.5.10): confirm, stop
 * with env clearing, `local-dns uninstall` when its manifest says local DNS
 * is installed, remove $LINKUP_HOME, say where the binary is.
 */
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/home.h"
#include "cli/procs.h"

static const char uninstall_usage[] = "Uninstall linkup and cleanup configurations.\n\n"
                                      "Usage: linkup uninstall [OPTIONS]\n\n"
                                      "Options:\n"
                                      "  -y, --yes   Do not ask for confirmation\n"
                                      "  -h, --help  Print help\n";

static bool confirmed(void)
{
    char line[64] = "";
    printf("Are you sure you want to uninstall linkup? [y/N]: ");
    fflush(stdout);
    if (fgets(line, sizeof(line), stdin) == NULL)
        return false;
    struct lk_str answer = lk_str_trim(lk_str_c(line));
    return lk_str_ieq(answer, LK_STR("y")) || lk_str_ieq(answer, LK_STR("yes"));
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == -1 ? -1 : 0;
}

int cmd_uninstall(int argc, char **argv, struct cli_ctx *ctx)
{
    bool yes = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(uninstall_usage, stdout);
            return LK_EXIT_OK;
        }
        if (strcmp(argv[i], "--yes") != 0 && strcmp(argv[i], "-y") != 0)
            return cli_usage_error("uninstall", "unexpected argument '%s'", argv[i]);
        yes = true;
    }
    int rc = cli_home_ensure();
    if (rc != 0)
        return rc;
    if (!yes && !confirmed()) {
        printf("Aborted!\n");
        return LK_EXIT_OK;
    }
    cli_home_lock();
    cli_stop_all(true);
    /* Step 3: undo local DNS as its install recorded it; on failure keep
     * $LINKUP_HOME (and so the record) for another try. */
    int dns = cli_local_dns_uninstall_recorded(ctx);
    if (dns > 0)
        return cli_fail("Failed to uninstall local DNS; nothing else was removed");
    if (nftw(cli_home(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == -1)
        return cli_fail("Failed to remove %s", cli_home());
    char self[4096];
    if (cli_procs_self_exe(self, sizeof(self)) == 0)
        printf("To finish, remove the linkup binary: %s\n", self);
    printf("linkup uninstalled!\n");
    return LK_EXIT_OK;
}
