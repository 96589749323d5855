/*
 * cmd_completion.c - `linkup completion [--shell bash|zsh|fish|elvish|powershell]`
 * (SPEC §6.5.8): scripts that complete commands, options and, for `route`,
 * the service names of the config found when the script is generated.
 */
#include <ctype.h>
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
    "      --shell <SHELL>    [possible values: bash, elvish, fish, powershell, zsh]\n"
    "  -c, --config <CONFIG>  Config whose service names `route` completes, overriding\n"
    "                         environment variable.\n"
    "  -h, --help             Print help\n";

static const char commands[] =
    "start stop route sessions status health local-dns update uninstall completion infra config "
    "inspect worker";

/* What each command completes to (subcommands, options, option values); with
 * services, also the config's service names. Everything else: --config
 * --help. Bash completes a command with subcommands to its `sub` words once
 * one is typed, and so does zsh (fish, elvish and powershell keep `words`). */
static const struct {
    const char *cmd;
    const char *words;
    bool services;
    const char *sub; /* after a subcommand (bash, zsh); NULL: words */
} table[] = {
    { "start", "--config --help", false, NULL },
    { "stop", "--help", false, NULL },
    { "route", "local remote --all --help", true, "--all --help" },
    { "sessions", "create-preview list --print-request --json --help", true,
      "--print-request --json --help" },
    { "status", "--json --session --help", false, NULL },
    { "health", "--json --help", false, NULL },
    { "local-dns", "install uninstall --root --platform linux macos --dns --domain --config --help",
      false, "--root --platform --dns --domain --config --help" },
    { "update", "--channel stable beta --skip-cache --help", false, NULL },
    { "uninstall", "--yes --help", false, NULL },
    { "completion", "--shell bash elvish fish powershell zsh --help", false, NULL },
    { "infra", "deploy destroy --email --api-key --account-id --zone-ids --help", false,
      "--email --api-key --account-id --zone-ids --help" },
    { "config", "check --json --config --help", false, "--json --config --help" },
    { "inspect", "--session --limit --follow --json --help", false, NULL },
    { "worker",
      "--listen --token --store --tunnel-domain --tunnel-prefix --tunnel-scheme --tunnel-port "
      "--peer-url --peer-secret --session-auth --session-auth-scope --help",
      false, NULL },
};
#define N_TABLE (sizeof(table) / sizeof(table[0]))

/* True for a name no shell quotes or expands: [A-Za-z0-9._-]+. A service name
 * is any YAML string, and the scripts embed the names in shell code that runs
 * at every <TAB>, so a name with quotes, `$(...)` or spaces is left out. */
static bool plain_word(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
            return false;
    return true;
}

/* Space-separated service names of the config (ctx or LINKUP_CONFIG), or "". */
static void service_names(const struct cli_ctx *ctx, struct lk_buf *out)
{
    const char *path = ctx->config_path ? ctx->config_path : getenv("LINKUP_CONFIG");
    struct lk_config *cfg = cli_config_try(path);
    for (size_t i = 0; cfg && i < cfg->n_services; i++)
        if (plain_word(cfg->services[i].name))
            lk_buf_addf(out, "%s%s", out->len ? " " : "", cfg->services[i].name);
    lk_config_free(cfg);
}

/* The fixed values of options that take one (bash and zsh complete only
 * these after the option; files after -c/--config/--root). */
#define VALUES_OF(sep, end)                                        \
    "--channel) " sep "stable beta" end "\n"                       \
    "    --shell) " sep "bash elvish fish powershell zsh" end "\n" \
    "    --platform) " sep "linux macos" end "\n"                  \
    "    --tunnel-scheme) " sep "http https" end "\n"              \
    "    --session-auth-scope) " sep "all urls" end
#define BASH_VALUES VALUES_OF("COMPREPLY=($(compgen -W \"", "\" -- \"$cur\")); return ;;")
#define ZSH_VALUES  VALUES_OF("compadd -- ", "; return ;;")

/* Bash and zsh find the command as the first word that is neither an option
 * nor the value of -c/--config, so `linkup -c F route <TAB>` completes too.
 * Bash splits `--opt=VALUE` into three words (`=` is in COMP_WORDBREAKS), so
 * its script steps over the `=` too. */
static void bash_script(const char *services)
{
    printf("# bash completion for linkup\n"
           "_linkup() {\n"
           "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" cmd=\"\" i\n"
           "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
           "        case \"${COMP_WORDS[i]}\" in\n"
           "        -c | --config) i=$((i + 1)); [ \"${COMP_WORDS[i]}\" = = ] && i=$((i + 1)) ;;\n"
           "        -*) ;;\n"
           "        *) cmd=\"${COMP_WORDS[i]}\"; break ;;\n"
           "        esac\n"
           "    done\n"
           "    local sub=\"\" j\n"
           "    for ((j = i + 1; j < COMP_CWORD; j++)); do\n"
           "        case \"${COMP_WORDS[j]}\" in\n"
           "        -*) ;;\n"
           "        *) sub=\"${COMP_WORDS[j]}\"; break ;;\n"
           "        esac\n"
           "    done\n"
           "    local words prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
           "    [ \"$prev\" = = ] && prev=\"${COMP_WORDS[COMP_CWORD-2]}\"\n"
           "    case \"$prev\" in\n"
           "    -c | --config | --root) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
           "    %s\n"
           "    esac\n"
           "    case \"$cmd\" in\n"
           "    \"\") words=\"%s --config --help --version\" ;;\n",
           BASH_VALUES, commands);
    for (size_t i = 0; i < N_TABLE; i++) {
        const char *svc = table[i].services ? services : "";
        const char *sep = *svc ? " " : "";
        if (table[i].sub != NULL)
            printf("    %s) if [ -n \"$sub\" ]; then words=\"%s%s%s\"; else words=\"%s%s%s\"; fi "
                   ";;\n",
                   table[i].cmd, table[i].sub, sep, svc, table[i].words, sep, svc);
        else
            printf("    %s) words=\"%s%s%s\" ;;\n", table[i].cmd, table[i].words, sep, svc);
    }
    printf("    *) words=\"--config --help\" ;;\n"
           "    esac\n"
           "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
           "}\n"
           "complete -F _linkup linkup\n");
}

static void zsh_script(const char *services)
{
    printf("#compdef linkup\n"
           "_linkup() {\n"
           "    local -a cmds services\n"
           "    local cmd=\"\" i\n"
           "    cmds=(%s)\n"
           "    services=(%s)\n"
           "    for ((i = 2; i < CURRENT; i++)); do\n"
           "        case $words[i] in\n"
           "        -c|--config) i=$((i + 1)) ;;\n"
           "        -*) ;;\n"
           "        *) cmd=$words[i]; break ;;\n"
           "        esac\n"
           "    done\n"
           "    local sub=\"\" j\n"
           "    for ((j = i + 1; j < CURRENT; j++)); do\n"
           "        case $words[j] in\n"
           "        -*) ;;\n"
           "        *) sub=$words[j]; break ;;\n"
           "        esac\n"
           "    done\n"
           "    case $words[CURRENT-1] in\n"
           "    -c|--config|--root) _files; return ;;\n"
           "    %s\n"
           "    esac\n"
           "    case $cmd in\n"
           "    \"\") compadd -- $cmds --config --help --version ;;\n",
           commands, services, ZSH_VALUES);
    for (size_t i = 0; i < N_TABLE; i++) {
        const char *svc = table[i].services ? " $services" : "";
        if (table[i].sub != NULL)
            printf("    %s) if [[ -n $sub ]]; then compadd -- %s%s; else compadd -- %s%s; fi ;;\n",
                   table[i].cmd, table[i].sub, svc, table[i].words, svc);
        else
            printf("    %s) compadd -- %s%s ;;\n", table[i].cmd, table[i].words, svc);
    }
    printf("    *) compadd -- --config --help ;;\n"
           "    esac\n"
           "}\n"
           /* Autoloaded from fpath (`#compdef`), this file is the body of
            * _linkup: its first call defines the function and must then
            * complete with it; sourced, it registers it (clap's ending). */
           "if [ \"$funcstack[1]\" = \"_linkup\" ]; then\n"
           "    _linkup \"$@\"\n"
           "else\n"
           "    compdef _linkup linkup\n"
           "fi\n");
}

/* fish: options (--x) as -l, other words as -a, per command. */
static void fish_script(const char *services)
{
    printf("# fish completion for linkup\n"
           "complete -c linkup -f\n"
           "complete -c linkup -n __fish_use_subcommand -a '%s'\n"
           "complete -c linkup -s c -l config -r -d 'Path to config file'\n",
           commands);
    for (size_t i = 0; i < N_TABLE; i++) {
        const char *w = table[i].words;
        struct lk_buf args = LK_BUF_INIT;
        lk_buf_adds(&args, "");
        while (*w) {
            size_t len = strcspn(w, " ");
            if (strncmp(w, "--", 2) == 0)
                printf("complete -c linkup -n '__fish_seen_subcommand_from %s' -l %.*s\n",
                       table[i].cmd, (int)len - 2, w + 2);
            else
                lk_buf_addf(&args, "%s%.*s", args.len ? " " : "", (int)len, w);
            w += len + (w[len] == ' ');
        }
        if (table[i].services && *services)
            lk_buf_addf(&args, "%s%s", args.len ? " " : "", services);
        if (args.len)
            printf("complete -c linkup -n '__fish_seen_subcommand_from %s' -a '%s'\n", table[i].cmd,
                   args.data);
        lk_buf_release(&args);
    }
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
    struct lk_buf cmds = LK_BUF_INIT, svcs = LK_BUF_INIT, words = LK_BUF_INIT;
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
           "    ",
           cmds.data ? cmds.data : "", svcs.data ? svcs.data : "");
    for (size_t i = 0; i < N_TABLE; i++) {
        lk_buf_reset(&words);
        quoted_words(table[i].words, " ", &words);
        printf("%sif (eq $sub %s) {\n"
               "        put %s\n%s"
               "    } ",
               i ? "el" : "", table[i].cmd, words.data,
               table[i].services ? "        all $services\n" : "");
    }
    printf("else {\n"
           "        put --config --help\n"
           "    }\n"
           "}\n");
    lk_buf_release(&cmds);
    lk_buf_release(&svcs);
    lk_buf_release(&words);
}

static void powershell_script(const char *services)
{
    struct lk_buf cmds = LK_BUF_INIT, svcs = LK_BUF_INIT, words = LK_BUF_INIT;
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
           "        $candidates = switch ($words[1]) {\n",
           cmds.data ? cmds.data : "", svcs.data ? svcs.data : "");
    for (size_t i = 0; i < N_TABLE; i++) {
        lk_buf_reset(&words);
        quoted_words(table[i].words, ", ", &words);
        printf("            '%s' { @(%s)%s }\n", table[i].cmd, words.data,
               table[i].services ? " + $services" : "");
    }
    printf("            default { @('--config', '--help') }\n"
           "        }\n"
           "    }\n"
           "    $candidates | Where-Object { $_ -like \"$wordToComplete*\" } | ForEach-Object {\n"
           "        [System.Management.Automation.CompletionResult]::new($_, $_, "
           "'ParameterValue', $_)\n"
           "    }\n"
           "}\n");
    lk_buf_release(&cmds);
    lk_buf_release(&svcs);
    lk_buf_release(&words);
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
                               "invalid value '%s' for '--shell <SHELL>' [possible values: bash, "
                               "elvish, fish, powershell, zsh]",
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
