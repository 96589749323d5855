/*
 * cmd_completion.c - `linkup completion [--shell bash|zsh|fish|elvish|powershell]`
 * (SPEC §6.5.8): scripts that complete commands, options and, for `route`,
 * the service names of the config found when the script is generated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_state.h"
#include "cli/home.h"

static const char completion_usage[] =
    "Generate completions for your shell\n\n"
    "Usage: linkup completion [OPTIONS]\n\n"
    "Options:\n"
    "      --shell <SHELL>  [possible values: bash, elvish, fish, powershell, zsh]\n"
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
           "    completion) COMPREPLY=($(compgen -W \"--shell bash elvish fish powershell zsh\" -- "
           "\"$cur\")) ;;\n"
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
           "    completion) compadd -- --shell bash elvish fish powershell zsh ;;\n"
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
           "elvish fish powershell zsh'\n"
           "complete -c linkup -n '__fish_seen_subcommand_from uninstall' -l yes\n",
           commands, services);
}

/* Each space-separated word of list as a single-quoted string (a quote
 * doubled inside), joined by sep: the literal syntax of elvish and
 * PowerShell alike. */
static void quoted_words(const char *list, const char *sep, struct lk_buf *out)
{
    bool first = true;
    while (*list) {
        size_t len = strcspn(list, " ");
        if (len > 0) {
            lk_buf_addf(out, "%s'", first ? "" : sep);
            for (size_t i = 0; i < len; i++) {
                if (list[i] == '\'')
                    lk_buf_addch(out, '\'');
                lk_buf_addch(out, list[i]);
            }
            lk_buf_addch(out, '\'');
            first = false;
        }
        list += len;
        if (*list == ' ')
            list++;
    }
}

static void elvish_script(const char *services)
{
    struct lk_buf cmds = LK_BUF_INIT, svcs = LK_BUF_INIT;
    quoted_words(commands, " ", &cmds);
    quoted_words(services, " ", &svcs);
    printf("# elvish completion for linkup\n"
           "set edit:completion:arg-completer[linkup] = {|@words|\n"
           "    var cmds = [%s]\n"
           "    var services = [%s]\n"
           "    if (== (count $words) 2) {\n"
           "        all $cmds\n"
           "        put --config --help --version\n"
           "        return\n"
           "    }\n"
           "    var sub = $words[1]\n"
           "    if (eq $sub route) {\n"
           "        put local remote --all --help\n"
           "        all $services\n"
           "    } elif (eq $sub status) {\n"
           "        put --json --session --help\n"
           "    } elif (eq $sub health) {\n"
           "        put --json --help\n"
           "    } elif (eq $sub sessions) {\n"
           "        put create-preview list --print-request --json --help\n"
           "        all $services\n"
           "    } elif (eq $sub completion) {\n"
           "        put --shell bash elvish fish powershell zsh\n"
           "    } elif (eq $sub uninstall) {\n"
           "        put --yes --help\n"
           "    } else {\n"
           "        put --config --help\n"
           "    }\n"
           "}\n",
           cmds.data ? cmds.data : "", svcs.data ? svcs.data : "");
    lk_buf_release(&cmds);
    lk_buf_release(&svcs);
}

static void powershell_script(const char *services)
{
    struct lk_buf cmds = LK_BUF_INIT, svcs = LK_BUF_INIT;
    quoted_words(commands, ", ", &cmds);
    quoted_words(services, ", ", &svcs);
    printf("# PowerShell completion for linkup\n"
           "Register-ArgumentCompleter -Native -CommandName 'linkup' -ScriptBlock {\n"
           "    param($wordToComplete, $commandAst, $cursorPosition)\n"
           "    $commands = @(%s)\n"
           "    $services = @(%s)\n"
           "    $elements = @($commandAst.CommandElements | ForEach-Object { $_.ToString() })\n"
           "    $words = @($elements | Where-Object { $_ -ne $wordToComplete })\n"
           "    if ($words.Count -le 1) {\n"
           "        $candidates = $commands + @('--config', '--help', '--version')\n"
           "    } else {\n"
           "        $candidates = switch ($words[1]) {\n"
           "            'route' { @('local', 'remote', '--all', '--help') + $services }\n"
           "            'status' { @('--json', '--session', '--help') }\n"
           "            'health' { @('--json', '--help') }\n"
           "            'sessions' { @('create-preview', 'list', '--print-request', '--json', "
           "'--help') + $services }\n"
           "            'completion' { @('--shell', 'bash', 'elvish', 'fish', 'powershell', "
           "'zsh') }\n"
           "            'uninstall' { @('--yes', '--help') }\n"
           "            default { @('--config', '--help') }\n"
           "        }\n"
           "    }\n"
           "    $candidates | Where-Object { $_ -like \"$wordToComplete*\" } | ForEach-Object {\n"
           "        [System.Management.Automation.CompletionResult]::new($_, $_, "
           "'ParameterValue', $_)\n"
           "    }\n"
           "}\n",
           cmds.data ? cmds.data : "", svcs.data ? svcs.data : "");
    lk_buf_release(&cmds);
    lk_buf_release(&svcs);
}

/* The shells clap_complete knows, by the file stem of $SHELL or --shell. */
static const char *const shells[] = { "bash", "elvish", "fish", "powershell", "zsh" };

static bool known_shell(const char *shell)
{
    for (size_t i = 0; shell && i < sizeof(shells) / sizeof(shells[0]); i++) {
        if (strcmp(shell, shells[i]) == 0)
            return true;
    }
    return false;
}

static const char *detect_shell(void)
{
    const char *sh = getenv("SHELL");
    const char *base = sh ? strrchr(sh, '/') : NULL;
    base = base ? base + 1 : sh;
    if (base && (strcmp(base, "powershell_ise") == 0 || strcmp(base, "powershell.exe") == 0 ||
                 strcmp(base, "powershell_ise.exe") == 0))
        return "powershell";
    return base;
}

int cmd_completion(int argc, char **argv, struct cli_ctx *ctx)
{
    static const struct cli_opt shell_opt = { NULL, "--shell", "SHELL" };
    const char *shell = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(completion_usage, stdout);
            return LK_EXIT_OK;
        }
        enum cli_opt_result r = cli_opt_value("completion", &shell_opt, argc, argv, &i, &shell);
        if (r == CLI_OPT_ERROR)
            return LK_EXIT_USAGE;
        if (r == CLI_OPT_NO_MATCH)
            return cli_usage_error("completion", "unexpected argument '%s'", argv[i]);
    }
    bool explicit_shell = shell != NULL;
    if (shell == NULL)
        shell = detect_shell();
    bool known = known_shell(shell);
    if (!known && explicit_shell)
        return cli_usage_error("completion",
                               "invalid value '%s' for '--shell' [possible values: bash, elvish, "
                               "fish, powershell, zsh]",
                               shell);
    if (!known)
        return cli_fail("Could not detect your shell from $SHELL. Pass --shell explicitly "
                        "(supported: bash, zsh, fish, elvish, powershell).");
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
    else if (strcmp(shell, "fish") == 0)
        fish_script(services.data);
    else if (strcmp(shell, "elvish") == 0)
        elvish_script(services.data);
    else
        powershell_script(services.data);
    lk_buf_release(&services);
    return LK_EXIT_OK;
}
