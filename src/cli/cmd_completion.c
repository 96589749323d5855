/*
 * cmd_completion.c - `linkup completion [--shell bash|zsh|fish]`
 * (SPEC §6.5.8): scripts that complete commands, options and, for `route`,
 * the service names of the config found when the script is generated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/home.h"

static const char completion_usage[] = "Generate completions for your shell\n\n"
                                       "Usage: linkup completion [OPTIONS]\n\n"
                                       "Options:\n"
                                       "      --shell <SHELL>  [possible values: bash, zsh, fish]\n"
                                       "  -h, --help           Print help\n";

static const char commands[] =
    "start stop route sessions status health local-dns update uninstall completion infra config";

/* Space-separated service names of the config (ctx or LINKUP_CONFIG), or "". */
static void service_names(const struct cli_ctx *ctx, struct lk_buf *out)
{
    const char *path = ctx->config_path ? ctx->config_path : getenv("LINKUP_CONFIG");
    struct lk_config *cfg = cli_config_try(path);
    for (size_t i = 0; cfg && i < cfg->n_services; i++)
        lk_buf_addf(out, "%s%s", i ? " " : "", cfg->services[i].name);
    lk_config_free(cfg);
}

static void bash_script(const char *services)
{
    printf("# bash completion for linkup\n"
           "_linkup() {\n"
           "    local cur prev cmd\n"
           "    cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
           "    prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
           "    cmd=\"${COMP_WORDS[1]}\"\n"
           "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
           "        COMPREPLY=($(compgen -W \"%s --config --help --version\" -- \"$cur\"))\n"
           "        return\n"
           "    fi\n"
           "    case \"$cmd\" in\n"
           "    route) COMPREPLY=($(compgen -W \"local remote --all --help %s\" -- \"$cur\")) ;;\n"
           "    status) COMPREPLY=($(compgen -W \"--json --session --help\" -- \"$cur\")) ;;\n"
           "    health) COMPREPLY=($(compgen -W \"--json --help\" -- \"$cur\")) ;;\n"
           "    sessions) COMPREPLY=($(compgen -W \"create-preview list --print-request --json "
           "--help %s\" -- \"$cur\")) ;;\n"
           "    completion) COMPREPLY=($(compgen -W \"--shell bash zsh fish\" -- \"$cur\")) ;;\n"
           "    uninstall) COMPREPLY=($(compgen -W \"--yes --help\" -- \"$cur\")) ;;\n"
           "    *) COMPREPLY=($(compgen -W \"--config --help\" -- \"$cur\")) ;;\n"
           "    esac\n"
           "}\n"
           "complete -F _linkup linkup\n",
           commands, services, services);
}

static void zsh_script(const char *services)
{
    printf("#compdef linkup\n"
           "_linkup() {\n"
           "    local -a cmds services\n"
           "    cmds=(%s)\n"
           "    services=(%s)\n"
           "    if (( CURRENT == 2 )); then\n"
           "        compadd -- $cmds --config --help --version\n"
           "        return\n"
           "    fi\n"
           "    case $words[2] in\n"
           "    route) compadd -- local remote --all --help $services ;;\n"
           "    status) compadd -- --json --session --help ;;\n"
           "    health) compadd -- --json --help ;;\n"
           "    sessions) compadd -- create-preview list --print-request --json --help ;;\n"
           "    completion) compadd -- --shell bash zsh fish ;;\n"
           "    uninstall) compadd -- --yes --help ;;\n"
           "    *) compadd -- --config --help ;;\n"
           "    esac\n"
           "}\n"
           "compdef _linkup linkup\n",
           commands, services);
}

static void fish_script(const char *services)
{
    printf("# fish completion for linkup\n"
           "complete -c linkup -f\n"
           "complete -c linkup -n __fish_use_subcommand -a '%s'\n"
           "complete -c linkup -s c -l config -r -d 'Path to config file'\n"
           "complete -c linkup -n '__fish_seen_subcommand_from route' -a 'local remote %s'\n"
           "complete -c linkup -n '__fish_seen_subcommand_from route' -s a -l all\n"
           "complete -c linkup -n '__fish_seen_subcommand_from status health sessions' -l json\n"
           "complete -c linkup -n '__fish_seen_subcommand_from status' -l session -r\n"
           "complete -c linkup -n '__fish_seen_subcommand_from sessions' -a 'create-preview "
           "list'\n"
           "complete -c linkup -n '__fish_seen_subcommand_from sessions' -l print-request\n"
           "complete -c linkup -n '__fish_seen_subcommand_from completion' -l shell -a 'bash "
           "zsh fish'\n"
           "complete -c linkup -n '__fish_seen_subcommand_from uninstall' -l yes\n",
           commands, services);
}

static const char *detect_shell(void)
{
    const char *sh = getenv("SHELL");
    const char *base = sh ? strrchr(sh, '/') : NULL;
    return base ? base + 1 : sh;
}

int cmd_completion(int argc, char **argv, struct cli_ctx *ctx)
{
    const char *shell = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(completion_usage, stdout);
            return LK_EXIT_OK;
        }
        if (strcmp(argv[i], "--shell") == 0 && i + 1 < argc)
            shell = argv[++i];
        else if (strncmp(argv[i], "--shell=", 8) == 0)
            shell = argv[i] + 8;
        else
            return cli_usage_error("completion", "unexpected argument '%s'", argv[i]);
    }
    bool explicit_shell = shell != NULL;
    if (shell == NULL)
        shell = detect_shell();
    bool known = shell && (strcmp(shell, "bash") == 0 || strcmp(shell, "zsh") == 0 ||
                           strcmp(shell, "fish") == 0);
    if (!known && explicit_shell)
        return cli_usage_error("completion",
                               "invalid value '%s' for '--shell' [possible values: bash, zsh, "
                               "fish]",
                               shell);
    if (!known)
        return cli_fail("Could not detect your shell from $SHELL. Pass --shell explicitly "
                        "(supported: bash, zsh, fish).");
    int rc = cli_home_ensure();
    if (rc != 0)
        return rc;
    struct lk_buf services = LK_BUF_INIT;
    lk_buf_adds(&services, "");
    service_names(ctx, &services);
    if (strcmp(shell, "bash") == 0)
        bash_script(services.data);
    else if (strcmp(shell, "zsh") == 0)
        zsh_script(services.data);
    else
        fish_script(services.data);
    lk_buf_release(&services);
    return LK_EXIT_OK;
}
